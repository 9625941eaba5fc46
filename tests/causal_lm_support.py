"""A tiny LLaMA-architecture causal LM for the causal-LM tests: random weights from a `LlamaConfig` and a small
byte-level BPE tokenizer trained in the test on GSM8K text, saved as a model folder `hpcq train` loads like
any other (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

from hpcq.data.paths import data_root

HIDDEN = 64


def gsm8k_texts(n: int = 300) -> list[str]:
    """Questions and answers of the first `n` GSM8K training records."""
    texts = []
    with (data_root() / "gsm8k" / "train.jsonl").open(encoding="utf-8") as handle:
        for _, line in zip(range(n), handle):
            record = json.loads(line)
            texts += [record["question"], record["answer"]]
    return texts


def write_tiny_llama(folder: Path, vocab_size: int = 1000, layers: int = 2, seed: int = 0) -> Path:
    """Save a random 2-layer LLaMA (hidden 64, 4 heads, 2 KV heads: q_proj 64→64, v_proj 64→32) and its
    tokenizer (BPE trained on GSM8K text, with <s>, </s>, <unk>) into `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(gsm8k_texts(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=128,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.unk_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
