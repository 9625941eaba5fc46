"""Reasoning data for causal-LM fine-tuning: GSM8K and the LLM-Adapters benchmark, its prompt template, and
token rows whose loss covers the answer only.

Data sets (under the data root, `HPCQ_DATA`; formats in their README.md files):

* `gsm8k`: OpenAI's GSM8K (`gsm8k/train.jsonl`, `gsm8k/test.jsonl`). The response a model learns is the
  human rationale with the calculator annotations `<<a*b=c>>` removed and the last line `#### N` rewritten as
  `The answer is N.`, the form the LLM-Adapters math rationales end with, so one answer extractor serves all.
* the LLM-Adapters test sets (`llm-adapters/<task>/test.json`): arithmetic (AddSub, MultiArith, SingleEq,
  gsm8k, AQuA, SVAMP, mawps) and commonsense (boolq, piqa, social_i_qa, hellaswag, winogrande, ARC-Easy,
  ARC-Challenge, openbookqa). `llm-adapters/gsm8k` is the benchmark's own copy of the GSM8K test set.
* the LLM-Adapters training sets `math_10k` and `commonsense_170k` (`llm-adapters/<name>.json`, or under
  `llm-adapters/ft-training_set/`), which are not in the shared copy (see its README): stage them first.

The prompt is the Alpaca template LLM-Adapters (and QuanTA, which follows it) trains and evaluates with,
without the stray indentation of their source file. The loss is on the response tokens and the end-of-text
token only (LLM-Adapters' `train_on_inputs=False`), as the QuanTA paper trains.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hpcq.data.paths import RESTAGE, data_file, data_root, dataset_dir
from hpcq.errors import ConfigError, DataError

IGNORE_INDEX = -100  # label of a token that is not scored (prompt and padding), as torch's cross_entropy uses

#: LLM-Adapters test sets → how an answer is read from a generated response (hpcq.eval.metrics.ANSWER_KINDS).
LLM_ADAPTERS_TASKS: dict[str, str] = {
    "AddSub": "number", "MultiArith": "number", "SingleEq": "number", "gsm8k": "number", "SVAMP": "number",
    "mawps": "number", "AQuA": "letter",
    "boolq": "choice", "piqa": "choice", "social_i_qa": "choice", "hellaswag": "choice", "winogrande": "choice",
    "ARC-Easy": "choice", "ARC-Challenge": "choice", "openbookqa": "choice",
}
#: Training sets of LLM-Adapters (not in the shared copy; sizes and hashes in llm-adapters/README.md).
LLM_ADAPTERS_TRAIN = ("math_10k", "commonsense_170k")
TRAIN_SETS = ("gsm8k", *LLM_ADAPTERS_TRAIN)
#: Evaluation sets: GSM8K's own test split and every LLM-Adapters test set (prefixed where names clash).
EVAL_TASKS = ("gsm8k", *(f"llm-adapters/{t}" if t == "gsm8k" else t for t in LLM_ADAPTERS_TASKS))

PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
    "### Input:\n{input}\n\n### Response:\n"
)


@dataclass(frozen=True)
class Example:
    """One problem: the instruction (and optional input), the response to learn, the gold answer to score."""

    instruction: str
    output: str
    answer: str
    input: str = ""


def prompt(example: Example) -> str:
    """The Alpaca prompt of `example`, ending where the model's response starts."""
    if example.input:
        return PROMPT_WITH_INPUT.format(instruction=example.instruction, input=example.input)
    return PROMPT.format(instruction=example.instruction)


def answer_kind(task: str) -> str:
    """How `task`'s answers are read from generated text: number, letter or choice."""
    if task == "gsm8k":
        return "number"
    name = task.removeprefix("llm-adapters/")
    if name not in LLM_ADAPTERS_TASKS:
        raise ConfigError(f"evaluation task {task!r} is unknown; use one of {', '.join(EVAL_TASKS)}")
    return LLM_ADAPTERS_TASKS[name]


# ---------------------------------------------------------------------------------------------------- loading

_CALCULATOR = re.compile(r"<<[^>]*>>")


def gsm8k_example(record: dict[str, Any]) -> Example:
    """A GSM8K record as an Example: annotations removed, `#### N` turned into `The answer is N.`."""
    rationale, sep, final = record["answer"].rpartition("####")
    if not sep:
        raise DataError(f"GSM8K answer has no '#### <answer>' line: {record['answer'][-80:]!r}")
    answer = final.strip().replace(",", "")
    steps = _CALCULATOR.sub("", rationale).strip()
    return Example(record["question"], f"{steps}\nThe answer is {answer}.", answer)


def _some(path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`records`, or a DataError when the file held none: an empty training or test set would otherwise train
    on nothing or score an empty evaluation."""
    if not records:
        raise DataError(f"data file {path} holds no records; {RESTAGE}")
    return records


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path} line {number} is not JSON ({err}); re-stage the data set") from err
    return _some(path, records)


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not JSON ({err}); re-stage the data set") from err
    if not isinstance(records, list):
        raise DataError(f"{path} must hold a JSON array of records, not {type(records).__name__}")
    return _some(path, records)


def _adapters_example(record: dict[str, Any], path: Path) -> Example:
    missing = [key for key in ("instruction", "output", "answer") if key not in record]
    if missing:
        raise DataError(f"a record of {path} lacks {missing}; expected instruction/input/output/answer")
    return Example(record["instruction"], record["output"], str(record["answer"]), record.get("input") or "")


def _training_file(name: str, root: Path) -> Path:
    folder = dataset_dir("llm-adapters", root)
    for candidate in (folder / f"{name}.json", folder / "ft-training_set" / f"{name}.json"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"training set {name!r} is not staged: neither {folder / f'{name}.json'} nor "
        f"{folder / 'ft-training_set' / f'{name}.json'} exists. Copy ft-training_set/{name}.json from the "
        f"AGI-Edgerunners/LLM-Adapters repository there (its size and sha256 are in llm-adapters/README.md), "
        f"or train on gsm8k"
    )


def load_train(name: str, root: Path | None = None) -> list[Example]:
    """The training examples of `name` (one of TRAIN_SETS)."""
    root = root if root is not None else data_root()
    if name == "gsm8k":
        return [gsm8k_example(r) for r in _read_jsonl(data_file(dataset_dir("gsm8k", root), "train.jsonl"))]
    if name in LLM_ADAPTERS_TRAIN:
        path = _training_file(name, root)
        return [_adapters_example(r, path) for r in _read_json(path)]
    raise ConfigError(f"training set {name!r} is unknown; use one of {', '.join(TRAIN_SETS)}")


def load_eval(task: str, root: Path | None = None) -> list[Example]:
    """The test examples of evaluation task `task` (one of EVAL_TASKS)."""
    root = root if root is not None else data_root()
    answer_kind(task)  # unknown names fail here, naming the known ones
    if task == "gsm8k":
        return [gsm8k_example(r) for r in _read_jsonl(data_file(dataset_dir("gsm8k", root), "test.jsonl"))]
    name = task.removeprefix("llm-adapters/")
    path = data_file(dataset_dir("llm-adapters", root) / name, "test.json")
    return [_adapters_example(r, path) for r in _read_json(path)]


# ------------------------------------------------------------------------------------------------- tokenising


@dataclass(frozen=True)
class SpecialIds:
    """The token ids a causal-LM row needs: start (None when the tokenizer has none), end and padding."""

    bos: int | None
    eos: int
    pad: int


def special_ids(tokenizer: Any) -> SpecialIds:
    """bos/eos/pad of `tokenizer`; padding falls back to unk, then eos (LLM-Adapters pads LLaMA with unk)."""
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"tokenizer {type(tokenizer).__name__} has no end-of-text token, so a response could never end; "
            f"use a causal-LM tokenizer (or set its eos_token)"
        )
    candidates = (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id)
    pad = next(i for i in candidates if i is not None)
    return SpecialIds(tokenizer.bos_token_id, tokenizer.eos_token_id, pad)


def prompt_ids(tokenizer: Any, example: Example, ids: SpecialIds) -> list[int]:
    """Token ids of the prompt alone, as generation starts from them."""
    start = [ids.bos] if ids.bos is not None else []
    return start + tokenizer(prompt(example), add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class TokenRow:
    """One training row: input ids and labels (IGNORE_INDEX on the prompt), and its answer-token count."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_answer_tokens(self) -> int:
        # labels are shifted by one inside the loss: the first position's label is never scored
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


def encode_example(tokenizer: Any, example: Example, max_length: int, ids: SpecialIds) -> TokenRow:
    """prompt + response + eos as ids, truncated to `max_length`; labels mask the prompt.

    The full text is tokenised in one piece, as LLM-Adapters does, and the prompt's tokens are masked; where
    the prompt's own tokenisation is not a prefix of the full one (a merge across the boundary), only the
    common prefix is masked, so no response token is ever hidden from the loss.
    """
    head = prompt_ids(tokenizer, example, ids)
    start = [ids.bos] if ids.bos is not None else []
    full = start + tokenizer(prompt(example) + example.output, add_special_tokens=False)["input_ids"] + [ids.eos]
    masked = 0
    while masked < min(len(head), len(full)) and head[masked] == full[masked]:
        masked += 1
    full = full[:max_length]
    labels = [IGNORE_INDEX] * min(masked, len(full)) + full[masked:]
    return TokenRow(full, labels)


def encode_examples(tokenizer: Any, examples: Sequence[Example], max_length: int) -> tuple[list[TokenRow], int]:
    """Token rows of `examples`, leaving out rows whose response was cut off entirely; returns (rows, dropped)."""
    ids = special_ids(tokenizer)
    rows = [encode_example(tokenizer, example, max_length, ids) for example in examples]
    kept = [row for row in rows if row.n_answer_tokens > 0]
    if not kept:
        raise ConfigError(
            f"every training row's prompt fills data.max_length={max_length} tokens, so no answer token is left "
            f"to learn; raise data.max_length"
        )
    return kept, len(rows) - len(kept)


def collate(rows: Sequence[TokenRow], pad_id: int) -> dict[str, Any]:
    """Right-padded `input_ids`, `attention_mask` and `labels` tensors (padding is never scored)."""
    import torch

    width = max(len(row.input_ids) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        input_ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        attention[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
