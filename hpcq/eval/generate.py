"""Evaluation by generation: greedy, batched decoding of the prompts, answers extracted and scored per task,
the test set split over the ranks and the results gathered in the original order.

Greedy decoding (no sampling, one beam) makes a score a function of the weights alone. Prompts are padded on
the left, so every row's response starts at the same position. When the model is sharded (FSDP) every rank
must run the same forward passes: the ranks then decode the same number of batches (padding a short share
with repeats that are thrown away) and Hugging Face's `synced_gpus` keeps finished ranks stepping until the
last one is done.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from hpcq.data.ranks import partition
from hpcq.data.reasoning import Example, SpecialIds, answer_kind, prompt_ids, special_ids
from hpcq.eval.metrics import accuracy, extract_answer, is_correct


@dataclass
class TaskResult:
    """One task's score and its per-example record (rank 0 holds all of it after gathering)."""

    task: str
    kind: str
    accuracy: float
    generated: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    seconds: float = 0.0
    new_tokens: int = 0

    def as_group(self) -> dict[str, Any]:
        """The task's subgroup of a run file's `eval/` group."""
        return {"kind": self.kind, "accuracy": self.accuracy, "n": len(self.correct), "seconds": self.seconds,
                "new_tokens": self.new_tokens, "generated": self.generated,
                "predicted": [p if p is not None else "" for p in self.predicted], "gold": self.gold,
                "correct": [bool(c) for c in self.correct]}


def _left_padded(rows: Sequence[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate_greedy(model: torch.nn.Module, rows: Sequence[list[int]], ids: SpecialIds, max_new_tokens: int,
                    device: torch.device, synced: bool = False) -> list[list[int]]:
    """New token ids after each prompt (greedy, up to `max_new_tokens`, cut after the first end token)."""
    input_ids, mask = _left_padded(rows, ids.pad, device)
    output = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False, num_beams=1,
                            max_new_tokens=max_new_tokens, pad_token_id=ids.pad, eos_token_id=ids.eos,
                            synced_gpus=synced)
    new = output[:, input_ids.shape[1]:].tolist()
    return [row[:row.index(ids.eos)] if ids.eos in row else row for row in new]


def _gather(values: list[Any], world_size: int) -> list[Any]:
    """Every rank's list, concatenated in rank order (each rank gets all)."""
    if world_size == 1:
        return values
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, values)
    return [value for part in gathered for value in part]


def evaluate_task(model: torch.nn.Module, tokenizer: Any, task: str, examples: Sequence[Example], *,
                  batch_size: int, max_new_tokens: int, device: torch.device, rank: int = 0, world_size: int = 1,
                  synced: bool = False) -> TaskResult:
    """Generate a response to each example (this rank's contiguous share), extract and score the answers.

    Every rank returns the whole task's result, in the order of `examples`. `synced`: the model is sharded
    and all ranks must take part in every forward pass (FSDP).
    """
    kind = answer_kind(task)
    ids = special_ids(tokenizer)
    mine = list(examples[partition(len(examples), rank, world_size)])
    n_batches = math.ceil(len(mine) / batch_size)
    if synced and world_size > 1:
        n_batches = math.ceil(math.ceil(len(examples) / world_size) / batch_size)
    started = time.perf_counter()
    texts: list[str] = []
    new_tokens = 0
    for index in range(n_batches):
        batch = mine[index * batch_size:(index + 1) * batch_size]
        real = len(batch)
        batch = batch + [(mine or list(examples))[0]] * (0 if real else 1)  # a rank out of rows still steps
        outputs = generate_greedy(model, [prompt_ids(tokenizer, e, ids) for e in batch], ids, max_new_tokens,
                                  device, synced)[:real]
        new_tokens += sum(len(o) for o in outputs)
        texts += tokenizer.batch_decode(outputs, skip_special_tokens=True)
    seconds = time.perf_counter() - started
    predicted = [extract_answer(kind, text) for text in texts]
    correct = [is_correct(kind, p, e.answer) for p, e in zip(predicted, mine)]
    generated, predicted, correct = (_gather(v, world_size) for v in (texts, predicted, correct))
    new_tokens = sum(_gather([new_tokens], world_size))
    seconds = max(_gather([seconds], world_size))
    return TaskResult(task, kind, accuracy(correct), generated, predicted, [e.answer for e in examples], correct,
                      seconds, new_tokens)
