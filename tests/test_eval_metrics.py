"""Answer extraction and scoring against hand-checked examples: LLM-Adapters' rules (last number within 0.001,
first letter A–E, first label word) and the official DROP exact match / F1 (bags of normalised tokens, numbers
must agree, multi-span answers aligned one-to-one)."""

from __future__ import annotations

import pytest

from hpcq.errors import ConfigError
from hpcq.eval import (
    drop_metrics,
    drop_score,
    extract_answer,
    extract_choice,
    extract_letter,
    extract_number,
    is_correct,
    normalise_answer,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("She sold 48/2 = 24 clips in May, so 48+24 = 72 in all. The answer is 72.", 72.0),
        ("They need 1,250 bricks.", 1250.0),  # the comma of thousands is dropped first
        ("The temperature fell to -3.5 degrees", -3.5),
        ("The answer is 18.", 18.0),  # "18." parses as 18
        ("no digits at all", None),
    ],
)
def test_last_number_is_the_prediction(text: str, number: float | None) -> None:
    assert extract_number(text) == number


@pytest.mark.parametrize(
    ("predicted", "gold", "correct"),
    [
        ("72.0", "72", True),
        ("71.9995", "72.0", True),  # within LLM-Adapters' 0.001
        ("71.99", "72.0", False),
        ("0.667", "0.6666666666666666", True),  # AddSub stores fractions as long decimals
        ("1250.0", "1,250", True),
        (None, "72", False),
    ],
)
def test_numbers_match_within_a_thousandth(predicted: str | None, gold: str, correct: bool) -> None:
    assert is_correct("number", predicted, gold) is correct


def test_letters_and_label_words_take_the_first_match() -> None:
    assert extract_letter("the answer is (C), not (D)") == "C"
    # LLM-Adapters' AQuA rule takes any capital A–E, so a sentence starting with "A" answers A: kept as published.
    assert extract_letter("A train leaves at noon; the answer is (B)") == "A"
    assert extract_letter("the answer is 42") is None
    assert extract_choice("the correct answer is solution2") == "solution2"
    assert extract_choice("the correct answer is false, not true") == "false"
    assert extract_choice("answer3 is right") == "answer3"
    assert extract_choice("I think so") is None
    assert is_correct("choice", "false", "false") and not is_correct("choice", "true", "false")
    assert is_correct("letter", "C", "C") and not is_correct("letter", None, "C")


def test_extract_answer_per_kind() -> None:
    assert extract_answer("number", "so 3 + 4 = 7") == "7.0"
    assert extract_answer("letter", "(E) 12 km") == "E"
    assert extract_answer("choice", "the correct answer is option1") == "option1"
    with pytest.raises(ConfigError, match="answer kind 'span'"):
        extract_answer("span", "x")


def test_drop_normalisation() -> None:
    # split on spaces and hyphens, lower case, punctuation and articles dropped, numbers written as floats
    assert normalise_answer("The Eagles' 2-yard run.") == "eagles 2.0 yard run"
    assert normalise_answer("well-known") == normalise_answer("well known") == "well known"


@pytest.mark.parametrize(
    ("predicted", "gold", "exact", "f1"),
    [
        ("the 3 touchdowns", "3 touchdowns", 1.0, 1.0),
        ("Smith", "John Smith", 0.0, 0.67),  # P = 1, R = 1/2 → 2/3, rounded to 2 decimals
        ("12 yards", "13 yards", 0.0, 0.0),  # the gold number is missing: no credit for "yards"
        (["Alice", "Bob"], ["Bob", "Carol"], 0.0, 0.5),  # aligned: Bob–Bob 1, Alice–Carol 0
        (["Bob"], ["Bob", "Carol"], 0.0, 0.5),  # one gold span unmatched
        (["Carol", "Bob"], ["Bob", "Carol"], 1.0, 1.0),  # order does not matter
    ],
)
def test_drop_exact_match_and_f1(predicted, gold, exact: float, f1: float) -> None:
    assert drop_metrics(predicted, gold) == (exact, f1)


def test_drop_score_takes_the_best_gold_answer() -> None:
    assert drop_score("Smith", ["John Smith", "Smith"]) == (1.0, 1.0)
    assert drop_score("Smith", ["John Smith", "Jane Doe"]) == (0.0, 0.67)
    with pytest.raises(ConfigError, match="at least one gold"):
        drop_score("Smith", [])
