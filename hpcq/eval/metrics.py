"""Scoring generated answers: answer extraction per task kind, exact match, and DROP's F1.

Extraction follows the LLM-Adapters evaluation scripts, which QuanTA's arithmetic and commonsense tables use:

* number (AddSub, MultiArith, SingleEq, GSM8K, SVAMP, MAWPS): commas removed, the LAST number in the
  response is the prediction; correct when |prediction − gold| <= 0.001.
* letter (AQuA): the FIRST capital A–E in the response.
* choice (BoolQ, PIQA, SIQA, HellaSwag, WinoGrande, ARC, OBQA): the first label word of the task's label set
  (true/false, solution1/2, answer1–5, ending1–4, option1/2) in the response; exact match with the gold label.

DROP-style F1 is the official DROP evaluation (Dua et al. 2019): answers are bags of normalised tokens
(lower case, punctuation and articles dropped, numbers as floats); a multi-span answer's bags are aligned
one-to-one with the gold bags (Hungarian assignment); a pair whose gold bag has numbers scores 0 unless it
shares one; F1 is the mean over the aligned bags, and the best over several gold answers counts.
"""

from __future__ import annotations

import math
import re
import string
from typing import Sequence

import numpy as np

from hpcq.errors import ConfigError

ANSWER_KINDS = ("number", "letter", "choice")
NUMBER_TOLERANCE = 1e-3  # LLM-Adapters' `miss`
_NUMBER = re.compile(r"-?\d+\.?\d*")
_LETTER = re.compile(r"A|B|C|D|E")
_CHOICE = re.compile(r"true|false|solution[12]|answer[1-5]|ending[1-4]|option[12]")


def extract_number(text: str) -> float | None:
    """The last number in `text` (commas removed), or None when there is none."""
    found = _NUMBER.findall(text.replace(",", ""))
    return float(found[-1]) if found else None


def extract_letter(text: str) -> str | None:
    """The first capital A–E in `text` (LLM-Adapters' AQuA rule), or None."""
    found = _LETTER.search(text.strip())
    return found.group(0) if found else None


def extract_choice(text: str) -> str | None:
    """The first label word (true, false, solutionN, answerN, endingN, optionN) in `text`, or None."""
    found = _CHOICE.search(text.strip())
    return found.group(0) if found else None


def extract_answer(kind: str, text: str) -> str | None:
    """The prediction read from generated `text` for an answer of `kind`, as text (None: nothing found)."""
    if kind == "number":
        value = extract_number(text)
        return None if value is None else repr(value)
    if kind == "letter":
        return extract_letter(text)
    if kind == "choice":
        return extract_choice(text)
    raise ConfigError(f"answer kind {kind!r} is not one of {', '.join(ANSWER_KINDS)}")


def is_correct(kind: str, predicted: str | None, gold: str) -> bool:
    """Exact match of an extracted prediction with the gold answer (numbers within NUMBER_TOLERANCE)."""
    if predicted is None:
        return False
    if kind == "number":
        try:
            gold_value = float(gold.replace(",", ""))
            return math.isclose(float(predicted), gold_value, rel_tol=0.0, abs_tol=NUMBER_TOLERANCE)
        except ValueError:
            return False
    return predicted == gold.strip()


def accuracy(flags: Sequence[bool]) -> float:
    """Share of True flags (exact-match accuracy); NaN for no examples."""
    return float(np.mean(flags)) if len(flags) else float("nan")


# ------------------------------------------------------------------------------------------------ DROP F1

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalise_token(token: str) -> str:
    token = token.lower()
    if not _is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCTUATION)
    if _is_number(token):
        token = str(float(token))
    return " ".join(_ARTICLES.sub(" ", token).split())


def normalise_answer(text: str) -> str:
    """DROP's normalisation: split on spaces and hyphens, lower case, drop punctuation (not inside numbers)
    and articles, write numbers as floats, collapse white space."""
    parts = (_normalise_token(token) for token in re.split(" |-", text))
    return " ".join(part for part in parts if part.strip()).strip()


def _bags(answer: str | Sequence[str]) -> tuple[list[str], list[set[str]]]:
    spans = [answer] if isinstance(answer, str) else list(answer)
    normalised = [normalise_answer(span) for span in spans]
    return normalised, [set(span.split()) for span in normalised]


def _bag_f1(predicted: set[str], gold: set[str]) -> float:
    overlap = len(predicted & gold)
    precision = overlap / len(predicted) if predicted else 1.0
    recall = overlap / len(gold) if gold else 1.0
    return 0.0 if precision == recall == 0.0 else 2 * precision * recall / (precision + recall)


def _numbers_agree(gold: set[str], predicted: set[str]) -> bool:
    gold_numbers = {word for word in gold if _is_number(word)}
    return not gold_numbers or bool(gold_numbers & {word for word in predicted if _is_number(word)})


def _aligned_f1(predicted: list[set[str]], gold: list[set[str]]) -> float:
    from scipy.optimize import linear_sum_assignment

    scores = np.zeros((len(gold), len(predicted)))
    for g, gold_bag in enumerate(gold):
        for p, predicted_bag in enumerate(predicted):
            if _numbers_agree(gold_bag, predicted_bag):
                scores[g, p] = _bag_f1(predicted_bag, gold_bag)
    rows, columns = linear_sum_assignment(-scores)
    best = np.zeros(max(len(gold), len(predicted)))
    for row, column in zip(rows, columns):
        best[row] = max(best[row], scores[row, column])
    return float(np.mean(best))


def drop_metrics(predicted: str | Sequence[str], gold: str | Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction against one gold answer, each a span or a list of spans.

    F1 is rounded to 2 decimals as the official script does.
    """
    predicted_spans, predicted_bags = _bags(predicted)
    gold_spans, gold_bags = _bags(gold)
    exact = float(set(predicted_spans) == set(gold_spans) and len(predicted_spans) == len(gold_spans))
    return exact, round(_aligned_f1(predicted_bags, gold_bags), 2)


def drop_score(predicted: str | Sequence[str], golds: Sequence[str | Sequence[str]]) -> tuple[float, float]:
    """(exact match, F1): the best of `drop_metrics` over several acceptable gold answers."""
    if not golds:
        raise ConfigError("drop_score needs at least one gold answer")
    scores = [drop_metrics(predicted, gold) for gold in golds]
    return max(s[0] for s in scores), max(s[1] for s in scores)
