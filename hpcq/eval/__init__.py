"""Evaluation of fine-tuned causal language models by generation: greedy batched decoding
(`hpcq.eval.generate`), answer extraction per task, exact match and DROP-style F1 (`hpcq.eval.metrics`)."""

from hpcq.eval.generate import TaskResult, evaluate_task, generate_greedy
from hpcq.eval.metrics import (
    ANSWER_KINDS,
    accuracy,
    drop_metrics,
    drop_score,
    extract_answer,
    extract_choice,
    extract_letter,
    extract_number,
    is_correct,
    normalise_answer,
)

__all__ = [
    "ANSWER_KINDS",
    "TaskResult",
    "accuracy",
    "drop_metrics",
    "drop_score",
    "evaluate_task",
    "extract_answer",
    "extract_choice",
    "extract_letter",
    "extract_number",
    "generate_greedy",
    "is_correct",
    "normalise_answer",
]
