"""Adapters for fine-tuning a model built of `nn.Linear`: QuanTA (`hpcq.adapters.quanta`), and the baselines it
is compared with (LoRA through peft, full fine-tuning, a frozen body) in `hpcq.adapters.methods`."""
