"""Rule graders: score an extracted boxed answer against a task's ground truth."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from pyvision_env.tasks.task import Task

GRADING_MODES: tuple[str, ...] = ("exact", "mra")

# VSI-Bench's confidence thresholds 0.50, 0.55, ..., 0.95, kept as exact fractions.
MRA_THRESHOLDS: tuple[Fraction, ...] = tuple(Fraction(50 + 5 * k, 100) for k in range(10))

# An MRA-graded answer counts as correct (and earns the tool reward) above this score,
# the `acc_reward > 0.5` rule of PyVision-RL's `reward_score/vl_agent.py`.
MRA_CORRECT_ABOVE = 0.5


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


# ---------------------------------------------------------------- normalisation

_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_EDGE_JUNK = " \t\n.,;:!?\"'`()[]{}<>«»“”‘’*"
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+(?=\S)")
_WHITESPACE = re.compile(r"\s+")


def _unwrap_latex(text: str) -> str:
    """Replace `\\text{x}` and similar wrappers by their content, innermost first."""
    previous = None
    while previous != text:
        previous, text = text, _LATEX_WRAPPER.sub(r"\1", text)
    return text


def normalize_text(text: str) -> str:
    """Canonical form of a free-text answer, used for text and option-text matching.

    Steps, in order: unwrap LaTeX text wrappers (`\\text{}`, `\\textbf{}`, `\\mathrm{}`,
    ...); lowercase (casefold); collapse runs of whitespace to one space; strip
    surrounding punctuation, brackets and quotes; drop one leading article
    ("a", "an", "the") when more words follow. Inner punctuation is kept.

    >>> normalize_text('  "The  \\\\text{Red} Car." ')
    'red car'
    """
    text = _WHITESPACE.sub(" ", _unwrap_latex(text).casefold()).strip(_EDGE_JUNK)
    return _LEADING_ARTICLE.sub("", text)


# ---------------------------------------------------------------- numbers

_NUMBER = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NUMBER_ONLY = re.compile(rf"^\$?\s*({_NUMBER})\s*\$?$")
_NUMBER_WITH_UNIT = re.compile(rf"^\$?\s*({_NUMBER})\s*\$?\s*([^\d\s][^\d]*)?$")


def parse_number(text: str, *, allow_unit: bool = True) -> float | None:
    """Parse one number written in plain text; None when `text` is not exactly that.

    Accepted: a sign (`+`, `-`, `−`), digits with optional comma thousands separators in
    groups of three (`1,234,567`), a decimal part (`12.0`, `.5`), an exponent (`1e3`),
    optional `$` delimiters and LaTeX text wrappers. With `allow_unit`, a trailing unit
    that holds no digit is ignored without conversion (`12 cm`, `3.5 m/s`, `45°`,
    `20%`). Rejected: anything else, e.g. two numbers (`3 to 5`), fractions (`3/4`),
    words (`twelve`), ambiguous separators (`1,23`), infinities and NaN.

    >>> parse_number("1,234.5")
    1234.5
    >>> parse_number("12 cm") == 12.0, parse_number("12 cm", allow_unit=False)
    (True, None)
    """
    stripped = _unwrap_latex(text).strip()
    match = (_NUMBER_WITH_UNIT if allow_unit else _NUMBER_ONLY).match(stripped)
    if match is None or not any(ch.isdigit() for ch in match.group(1)):
        return None
    literal = match.group(1).replace(",", "").replace("−", "-")
    try:
        value = float(literal)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


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

_BARE_LETTER = re.compile(r"^\(?([A-Za-z])\)?[.:)]?$")
_NAMED_LETTER = re.compile(r"^(?:option|choice|answer)\s*[:\-]?\s*\(?([A-Za-z])\)?[.:)]?$", re.IGNORECASE)
_LETTER_THEN_TEXT = re.compile(r"^\(?([A-Z])(?:\)|[.:])\s+\S")


def _extract_letter(text: str) -> str | None:
    """The option letter a choice answer names, upper-cased, or None.

    Accepts `B`, `b`, `(B)`, `B.`, `B)`, `B:`, `Option B`, `Answer: (b)`, and an
    upper-case letter followed by option text (`B. a red car`, `(B) a red car`).
    """
    text = _unwrap_latex(text).strip()
    for pattern in (_BARE_LETTER, _NAMED_LETTER, _LETTER_THEN_TEXT):
        match = pattern.match(text)
        if match:
            return match.group(1).upper()
    return None


def _letter_of_option_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the first option whose normalised text equals `text`'s, or None."""
    wanted = normalize_text(text)
    for index, option in enumerate(choices):
        if normalize_text(option) == wanted:
            return chr(ord("A") + index)
    return None


def grade_choice(predicted: str, answer: str, choices: Sequence[str] = ()) -> Grade:
    """Grade a multiple-choice answer given as a letter or, when `choices` is known, as option text.

    The letter forms accepted are those of `_extract_letter`; option text is compared
    after `normalize_text`. With `choices`, a letter past the last option is wrong.

    Raises:
        ValueError: `answer` names no option letter.
    """
    gold = _extract_letter(answer)
    if gold is None:
        raise ValueError(f"ground truth {answer!r} is not an option letter: fix the task's answer or answer_type")
    letter = _extract_letter(predicted)
    if letter is None and choices:
        letter = _letter_of_option_text(predicted, choices)
    if letter is None:
        return Grade(0.0, False, predicted, "no option letter or option text")
    if choices and ord(letter) - ord("A") >= len(choices):
        return Grade(0.0, False, predicted, f"no option {letter}")
    return _verdict(letter == gold, predicted)


# ---------------------------------------------------------------- text and dispatch


def grade_text(predicted: str, answer: str) -> Grade:
    """Grade a free-text answer: correct when both are equal after `normalize_text`."""
    return _verdict(normalize_text(predicted) == normalize_text(answer), predicted)


def grade(task: Task, predicted: str | None) -> Grade:
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
