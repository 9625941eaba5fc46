"""Training: `hpcq train` validates a run config (`config`, `schemas/`) and hands it to the trainer its
`task:` names (`run`): the quantum or classical head on embedding shards (`head`), GLUE sequence
classification (`glue`), the adapted body with the quantum head (`joint`), causal-LM fine-tuning
(`causal_lm`). The epoch loop and checkpoints are `loop` and `checkpoint`; data parallelism is `dataparallel`
(MPI ranks) and `distributed` (torch.distributed for causal LMs)."""
