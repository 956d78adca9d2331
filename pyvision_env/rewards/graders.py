"""Rule graders: score an extracted boxed answer against a task's ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Protocol, Sequence

from pyvision_env.answers import (
    GRADING_MODES,
    choice_index,
    extract_letter,
    letter_of_option_text,
    normalize_text,
    parse_number,
)

# VSI-Bench's confidence thresholds 0.50, 0.55, ..., 0.95, kept as exact fractions.
MRA_THRESHOLDS: tuple[Fraction, ...] = tuple(Fraction(50 + 5 * k, 100) for k in range(10))

# An MRA-graded answer counts as correct (and earns the tool reward) above this score,
# the `acc_reward > 0.5` rule of PyVision-RL's `reward_score/vl_agent.py`.
MRA_CORRECT_ABOVE = 0.5


class Gradable(Protocol):
    """What `grade` reads of a task; a `pyvision_env.tasks.Task` is one."""

    @property
    def answer(self) -> str: ...

    @property
    def answer_type(self) -> str: ...

    @property
    def choices(self) -> Sequence[str]: ...

    @property
    def extra(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Grade:
    """The verdict on one answer.

    Attributes:
        score: accuracy in 0..1 (1 or 0 except for MRA-graded numbers).
        correct: whether the answer counts as right (gates the tool reward).
        predicted: the boxed answer as given, or None when there was none.
        reason: why, in a few words: "match", "mismatch", "no boxed answer", "mra 0.80", ...
        judge_error: set when the LLM judge could not give a verdict (endpoint down, ...): the
            grade is then no verdict on the answer, and the episode ends with JUDGE_FAILURE.
    """

    score: float
    correct: bool
    predicted: str | None
    reason: str
    judge_error: str | None = None


# ---------------------------------------------------------------- numbers


def mean_relative_accuracy(predicted: float, target: float) -> float:
    """VSI-Bench's mean relative accuracy of `predicted` against `target`, in 0..1.

    The share of thresholds theta in {0.50, 0.55, ..., 0.95} for which
    `|predicted - target| / |target| < 1 - theta` (strict, as in the VSI-Bench paper and
    PyVision-RL's `rule_match_verify._compute_mra`; VSI-Bench's lmms-eval code uses `<=`,
    which differs only exactly on a threshold). The comparison is done in exact decimal
    arithmetic, so boundary cases do not depend on float rounding. A target of 0 scores
    1.0 for a prediction of exactly 0 and 0.0 otherwise (PyVision-RL's rule).

    >>> mean_relative_accuracy(10.0, 10.0), mean_relative_accuracy(12.0, 10.0)
    (1.0, 0.6)
    """
    if not (math.isfinite(predicted) and math.isfinite(target)):
        return 0.0
    pred, gold = Fraction(repr(predicted)), Fraction(repr(target))
    if gold == 0:
        return 1.0 if pred == 0 else 0.0
    relative_error = abs(pred - gold) / abs(gold)
    hits = sum(1 for theta in MRA_THRESHOLDS if relative_error < 1 - theta)
    return hits / len(MRA_THRESHOLDS)


def grade_number(predicted: str, answer: str, *, mode: str = "exact") -> Grade:
    """Grade a numeric answer.

    `mode="exact"`: score 1 when both parse (see `parse_number`) to the same value,
    so `12`, `12.0`, `+12`, `1.2e1` and `12 cm` all match an answer of `12`.
    `mode="mra"`: score = `mean_relative_accuracy`; correct when the score is above
    `MRA_CORRECT_ABOVE` (0.5). An unparseable prediction scores 0.

    Raises:
        ValueError: `mode` is unknown, or `answer` is not a number.
    """
    if mode not in GRADING_MODES:
        raise ValueError(f"grading mode must be one of {GRADING_MODES}, got {mode!r}")
    gold = parse_number(answer)
    if gold is None:
        raise ValueError(f"ground truth {answer!r} is not a number: fix the task's answer or answer_type")
    value = parse_number(predicted)
    if value is None:
        return Grade(0.0, False, predicted, "not a number")
    if mode == "mra":
        score = mean_relative_accuracy(value, gold)
        return Grade(score, score > MRA_CORRECT_ABOVE, predicted, f"mra {score:.2f}")
    return _verdict(value == gold, predicted)


# ---------------------------------------------------------------- choices

def grade_choice(predicted: str, answer: str, choices: Sequence[str] = ()) -> Grade:
    """Grade a multiple-choice answer given as a letter or, when `choices` is known, as option text.

    The letter forms accepted are those of `pyvision_env.answers.extract_letter`; option text is compared
    after `normalize_text`. With `choices`, a letter past the last option is wrong.

    Raises:
        ValueError: `answer` names no option letter.
    """
    gold = extract_letter(answer)
    if gold is None:
        raise ValueError(f"ground truth {answer!r} is not an option letter: fix the task's answer or answer_type")
    letter = extract_letter(predicted)
    if letter is None and choices:
        letter = letter_of_option_text(predicted, choices)
    if letter is None:
        return Grade(0.0, False, predicted, "no option letter or option text")
    if choices and choice_index(letter) >= len(choices):
        return Grade(0.0, False, predicted, f"no option {letter}")
    return _verdict(letter == gold, predicted)


# ---------------------------------------------------------------- text and dispatch


def grade_text(predicted: str, answer: str) -> Grade:
    """Grade a free-text answer: correct when both are equal after `normalize_text`."""
    return _verdict(normalize_text(predicted) == normalize_text(answer), predicted)


def grade(task: Gradable, predicted: str | None) -> Grade:
    """Grade the extracted boxed answer `predicted` for `task`, by `task.answer_type`.

    None (no boxed answer) and blank answers score 0. Numbers use
    `task.extra["grading"]`: "mra" for mean relative accuracy, else exact.
    """
    if predicted is None:
        return Grade(0.0, False, None, "no boxed answer")
    if not predicted.strip():
        return Grade(0.0, False, predicted, "empty answer")
    if task.answer_type == "choice":
        return grade_choice(predicted, task.answer, task.choices)
    if task.answer_type == "number":
        return grade_number(predicted, task.answer, mode=task.extra.get("grading") or "exact")
    return grade_text(predicted, task.answer)


def _verdict(ok: bool, predicted: str) -> Grade:
    """A 0/1 grade with the reason "match" or "mismatch"."""
    return Grade(1.0 if ok else 0.0, ok, predicted, "match" if ok else "mismatch")
