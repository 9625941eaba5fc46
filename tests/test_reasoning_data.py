"""Reasoning data on the shared copies: GSM8K and the LLM-Adapters test sets (counts from their README files),
the Alpaca prompt, rows whose loss covers the answer only, and clear errors for unknown or unstaged sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from causal_lm_support import write_tiny_llama

from hpcq.data.reasoning import (
    EVAL_TASKS,
    IGNORE_INDEX,
    LLM_ADAPTERS_TASKS,
    Example,
    answer_kind,
    collate,
    encode_example,
    encode_examples,
    load_eval,
    load_train,
    prompt,
    special_ids,
)
from hpcq.errors import ConfigError, DataError

# Record counts from shared/data/gsm8k/README.md and shared/data/llm-adapters/README.md.
COUNTS = {"gsm8k": 1319, "llm-adapters/gsm8k": 1319, "AddSub": 395, "MultiArith": 600, "SingleEq": 508,
          "SVAMP": 1000, "mawps": 238, "AQuA": 254, "boolq": 3270, "piqa": 1838, "social_i_qa": 1954,
          "winogrande": 1267, "ARC-Easy": 2376, "ARC-Challenge": 1172, "openbookqa": 500}


def test_gsm8k_train_as_rationale_ending_in_the_answer() -> None:
    examples = load_train("gsm8k")
    assert len(examples) == 7473
    first = examples[0]
    assert first.instruction.startswith("Natalia sold clips to 48 of her friends")
    assert first.answer == "72"
    assert first.output == ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in "
                            "April and May.\nThe answer is 72.")
    assert not any("<<" in e.output or "####" in e.output for e in examples)


@pytest.mark.parametrize("task", sorted(COUNTS))
def test_every_staged_test_set_loads_with_its_published_count(task: str) -> None:
    examples = load_eval(task)
    assert len(examples) == COUNTS[task]
    assert all(e.answer for e in examples)


def test_gold_answers_and_kinds() -> None:
    gsm8k, adapters_gsm8k = load_eval("gsm8k"), load_eval("llm-adapters/gsm8k")
    assert gsm8k[0].answer == "18"
    # LLM-Adapters' copy holds the same problems and answers (as "18.0"), in another order.
    assert sorted(float(e.answer) for e in gsm8k) == sorted(float(e.answer) for e in adapters_gsm8k)
    assert {e.instruction.strip() for e in gsm8k} == {e.instruction.strip() for e in adapters_gsm8k}
    aqua = load_eval("AQuA")[0]
    assert aqua.answer == "A" and "Answer Choices: (A) 23.65" in aqua.instruction
    assert {e.answer for e in load_eval("boolq")} == {"true", "false"}
    assert {answer_kind(t) for t in EVAL_TASKS} == {"number", "letter", "choice"}
    assert set(EVAL_TASKS) - {"hellaswag"} == set(COUNTS)
    assert answer_kind("AQuA") == "letter" and answer_kind("SVAMP") == "number" == answer_kind("gsm8k")
    assert len(LLM_ADAPTERS_TASKS) == 15


def test_missing_and_unknown_sets_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="hellaswag.test.json is missing"):
        load_eval("hellaswag")  # not in the shared copy (over 4 MiB, see its README)
    with pytest.raises(DataError, match=r"training set 'math_10k' is not staged.*sha256"):
        load_train("math_10k")
    with pytest.raises(ConfigError, match="evaluation task 'drop' is unknown"):
        load_eval("drop")
    with pytest.raises(ConfigError, match="training set 'alpaca' is unknown"):
        load_train("alpaca")
    with pytest.raises(DataError, match="not found"):
        load_train("gsm8k", root=tmp_path)


def test_empty_data_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"gsm8k/train\.jsonl holds no records; re-stage .*`hpcq stage"):
        load_train("gsm8k", root=tmp_path)
    (tmp_path / "llm-adapters" / "SVAMP").mkdir(parents=True)
    (tmp_path / "llm-adapters" / "SVAMP" / "test.json").write_text("[]")
    with pytest.raises(DataError, match=r"SVAMP/test\.json holds no records"):
        load_eval("SVAMP", root=tmp_path)


def test_staged_math_10k_is_read_from_the_training_set_folder(tmp_path: Path) -> None:
    folder = tmp_path / "llm-adapters" / "ft-training_set"
    folder.mkdir(parents=True)
    (folder / "math_10k.json").write_text('[{"instruction": "1+1?", "input": "", "output": "2. The answer is 2.", '
                                          '"answer": "2"}]')
    assert load_train("math_10k", root=tmp_path) == [Example("1+1?", "2. The answer is 2.", "2")]


def test_prompt_is_the_alpaca_template() -> None:
    assert prompt(Example("Add 2 and 3.", "5", "5")) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n")
    assert "### Input:\nx = 2\n\n### Response:\n" in prompt(Example("Double x.", "4", "4", input="x = 2"))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(write_tiny_llama(tmp_path_factory.mktemp("tiny")))


def test_loss_covers_the_answer_and_end_token_only(tokenizer) -> None:
    example = load_train("gsm8k")[1]
    ids = special_ids(tokenizer)
    row = encode_example(tokenizer, example, 4096, ids)
    assert row.input_ids[0] == ids.bos and row.input_ids[-1] == ids.eos
    scored = [token for token, label in zip(row.input_ids, row.labels) if label != IGNORE_INDEX]
    assert [label for label in row.labels if label != IGNORE_INDEX] == scored
    assert tokenizer.decode(scored[:-1]) == example.output and scored[-1] == ids.eos
    masked = row.labels.index(next(label for label in row.labels if label != IGNORE_INDEX))
    assert tokenizer.decode(row.input_ids[1:masked]) == prompt(example)
    assert row.n_answer_tokens == len(scored)


def test_truncation_drops_rows_without_answer_tokens_and_collate_pads(tokenizer) -> None:
    examples = load_train("gsm8k")[:6]
    ids = special_ids(tokenizer)
    prompt_lengths = [len(encode_example(tokenizer, e, 4096, ids).labels) - encode_example(tokenizer, e, 4096, ids)
                      .n_answer_tokens for e in examples]
    cut = sorted(prompt_lengths)[2]  # rows whose prompt reaches `cut` tokens keep no answer token
    rows, dropped = encode_examples(tokenizer, examples, cut)
    assert dropped == sum(length >= cut for length in prompt_lengths) and len(rows) == 6 - dropped
    assert all(len(row.input_ids) <= cut for row in rows)
    batch = collate(rows, ids.pad)
    width = max(len(r.input_ids) for r in rows)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (len(rows), width)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        assert batch["attention_mask"][i].sum() == n and (batch["labels"][i, n:] == IGNORE_INDEX).all()
    with pytest.raises(ConfigError, match="raise data.max_length"):
        encode_examples(tokenizer, examples, 8)
