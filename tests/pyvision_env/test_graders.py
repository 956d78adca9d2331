"""Tests for the rule graders and reward shaping."""

from __future__ import annotations

import math

import pytest

from pyvision_env.rewards import (
    Grade,
    RewardConfig,
    RewardParts,
    compute_reward,
    grade,
    grade_choice,
    grade_number,
    grade_text,
    mean_relative_accuracy,
    normalize_text,
    parse_number,
)
from pyvision_env.tasks.task import Task

CHOICES = ("a red car", "a blue bus", "two dogs")


def choice_task(answer: str = "B") -> Task:
    return Task(id="c", question="Which?", answer=answer, answer_type="choice", choices=CHOICES)


def number_task(answer: str = "12", grading: str | None = None) -> Task:
    extra = {"grading": grading} if grading else {}
    return Task(id="n", question="How many?", answer=answer, answer_type="number", extra=extra)


def text_task(answer: str = "Red") -> Task:
    return Task(id="t", question="What colour?", answer=answer, answer_type="text")


# ---------------------------------------------------------------- dispatch


@pytest.mark.parametrize("task", [choice_task(), number_task(), text_task()], ids=["choice", "number", "text"])
def test_no_boxed_answer_scores_zero(task: Task) -> None:
    assert grade(task, None) == Grade(0.0, False, None, "no boxed answer")


@pytest.mark.parametrize("task", [choice_task(), number_task(), text_task()], ids=["choice", "number", "text"])
def test_blank_answer_scores_zero(task: Task) -> None:
    assert grade(task, "  ") == Grade(0.0, False, "  ", "empty answer")


def test_grade_dispatches_on_answer_type() -> None:
    assert grade(choice_task(), "(B)").correct
    assert grade(number_task(), "12.0").correct
    assert grade(text_task(), "red.").correct
    assert grade(number_task("10", grading="mra"), "12") == Grade(0.6, True, "12", "mra 0.60")


# ---------------------------------------------------------------- choice


@pytest.mark.parametrize(
    "predicted",
    ["B", "b", "(B)", "B.", "B)", "B:", "Option B", "option (b)", "Answer: B", "B. a blue bus", "(B) a blue bus",
     r"\text{B}", " B "],
)
def test_choice_letter_forms(predicted: str) -> None:
    result = grade_choice(predicted, "B", CHOICES)
    assert (result.score, result.correct, result.reason) == (1.0, True, "match")


@pytest.mark.parametrize("predicted", ["A blue bus", "a blue bus", "The blue bus.", "  A  BLUE bus "])
def test_choice_option_text(predicted: str) -> None:
    assert grade_choice(predicted, "B", CHOICES).correct


@pytest.mark.parametrize(
    ("predicted", "reason"),
    [
        pytest.param("A", "mismatch", id="other-letter"),
        pytest.param("a red car", "mismatch", id="other-option-text"),
        pytest.param("D", "no option D", id="past-last-option"),
        pytest.param("a green tram", "no option letter or option text", id="unknown-text"),
        pytest.param("B or C", "no option letter or option text", id="two-letters"),
    ],
)
def test_choice_wrong(predicted: str, reason: str) -> None:
    result = grade_choice(predicted, "B", CHOICES)
    assert (result.score, result.correct, result.reason) == (0.0, False, reason)


def test_choice_without_known_options_accepts_letters_only() -> None:
    assert grade_choice("(c)", "C").correct
    assert not grade_choice("two dogs", "C").correct


def test_choice_ground_truth_must_be_a_letter() -> None:
    with pytest.raises(ValueError, match="not an option letter"):
        grade_choice("B", "blue bus", CHOICES)


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("12", 12.0, id="int"),
        pytest.param("12.0", 12.0, id="decimal"),
        pytest.param("+12", 12.0, id="plus"),
        pytest.param("-3.5", -3.5, id="negative"),
        pytest.param("−3.5", -3.5, id="unicode-minus"),
        pytest.param(".5", 0.5, id="leading-dot"),
        pytest.param("1e3", 1000.0, id="exponent"),
        pytest.param("1,234,567.25", 1234567.25, id="thousands"),
        pytest.param("$12$", 12.0, id="latex-math"),
        pytest.param(r"\text{12}", 12.0, id="latex-text"),
        pytest.param("12 cm", 12.0, id="unit"),
        pytest.param("3.5 m/s", 3.5, id="compound-unit"),
        pytest.param("20%", 20.0, id="percent"),
        pytest.param("45°", 45.0, id="degrees"),
    ],
)
def test_parse_number_accepts(text: str, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "twelve", "3 to 5", "3/4", "1,23", "12,3456", "x = 12", "-", ".", "inf", "nan", "1e999", "12 or 13"],
)
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


def test_parse_number_without_units() -> None:
    assert parse_number("12 cm", allow_unit=False) is None
    assert parse_number(" 1,234 ", allow_unit=False) == 1234.0


@pytest.mark.parametrize("predicted", ["12", "12.0", "12.000", "+12", "1.2e1", "12 apples", "$12$"])
def test_number_exact_match(predicted: str) -> None:
    assert grade_number(predicted, "12") == Grade(1.0, True, predicted, "match")


@pytest.mark.parametrize(
    ("predicted", "answer", "correct"),
    [
        pytest.param("1,234", "1234", True, id="separator-in-prediction"),
        pytest.param("1234", "1,234", True, id="separator-in-answer"),
        pytest.param("-0.5", "-.5", True, id="negative-decimal"),
        pytest.param("12.01", "12", False, id="close-is-not-equal"),
        pytest.param("-12", "12", False, id="sign"),
    ],
)
def test_number_exact_cases(predicted: str, answer: str, correct: bool) -> None:
    assert grade_number(predicted, answer).correct is correct


def test_number_unparseable_prediction() -> None:
    assert grade_number("about twelve", "12") == Grade(0.0, False, "about twelve", "not a number")


def test_number_bad_ground_truth_or_mode() -> None:
    with pytest.raises(ValueError, match="not a number"):
        grade_number("12", "twelve")
    with pytest.raises(ValueError, match="grading mode"):
        grade_number("12", "12", mode="fuzzy")


# Relative error e hits threshold theta when e < 1 - theta, theta in 0.50..0.95:
# e = 0    -> all 10;  e = 0.2 -> theta < 0.8: 0.50..0.75, 6;  e = 0.25 -> theta < 0.75: 5;
# e = 0.5  -> theta < 0.5: none;  e = 0.04 -> theta < 0.96: all 10;  e = 0.05 -> theta < 0.95: 9;
# e = 0.3  -> theta < 0.7: 0.50..0.65, 4;  e = 0.45 -> theta < 0.55: 0.50 only, 1.
@pytest.mark.parametrize(
    ("predicted", "target", "expected"),
    [
        pytest.param(10.0, 10.0, 1.0, id="exact"),
        pytest.param(12.0, 10.0, 0.6, id="20pct-over"),
        pytest.param(8.0, 10.0, 0.6, id="20pct-under"),
        pytest.param(7.5, 10.0, 0.5, id="25pct-under-boundary"),
        pytest.param(15.0, 10.0, 0.0, id="50pct-boundary"),
        pytest.param(1.04, 1.0, 1.0, id="4pct"),
        pytest.param(1.05, 1.0, 0.9, id="5pct-boundary"),
        pytest.param(1.3, 1.0, 0.4, id="30pct-boundary"),
        pytest.param(-5.5, -10.0, 0.1, id="negative-target"),
        pytest.param(100.0, 10.0, 0.0, id="far-off"),
        pytest.param(0.0, 0.0, 1.0, id="zero-target-hit"),
        pytest.param(0.1, 0.0, 0.0, id="zero-target-miss"),
        pytest.param(math.inf, 10.0, 0.0, id="infinite"),
    ],
)
def test_mean_relative_accuracy(predicted: float, target: float, expected: float) -> None:
    assert mean_relative_accuracy(predicted, target) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("predicted", "score", "correct"),
    [
        pytest.param("10", 1.0, True, id="exact"),
        pytest.param("12 m", 0.6, True, id="score-0.6"),
        pytest.param("7.5", 0.5, False, id="score-0.5-not-above"),
        pytest.param("20", 0.0, False, id="score-0"),
    ],
)
def test_number_mra_grade(predicted: str, score: float, correct: bool) -> None:
    result = grade(number_task("10", grading="mra"), predicted)
    assert (result.score, result.correct, result.reason) == (pytest.approx(score), correct, f"mra {score:.2f}")


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        pytest.param("  Red  ", "red", id="strip-lower"),
        pytest.param("Red\n\tCar", "red car", id="whitespace"),
        pytest.param('"red."', "red", id="quotes-and-period"),
        pytest.param("(red)", "red", id="brackets"),
        pytest.param(r"\text{Red}", "red", id="latex-text"),
        pytest.param(r"\textbf{\text{Red}}", "red", id="nested-latex"),
        pytest.param("The red car", "red car", id="leading-article"),
        pytest.param("A", "a", id="lone-article-kept"),
        pytest.param("red, not blue", "red, not blue", id="inner-punctuation-kept"),
        pytest.param("“Straße”", "strasse", id="casefold-and-curly-quotes"),
    ],
)
def test_normalize_text(text: str, normalised: str) -> None:
    assert normalize_text(text) == normalised


@pytest.mark.parametrize(
    ("predicted", "answer", "correct"),
    [
        pytest.param("red", "Red", True, id="case"),
        pytest.param("The left side.", "left side", True, id="article-and-period"),
        pytest.param(r"\text{yes}", "Yes", True, id="latex"),
        pytest.param("reddish", "red", False, id="not-substring"),
        pytest.param("left", "right", False, id="different"),
    ],
)
def test_grade_text(predicted: str, answer: str, correct: bool) -> None:
    result = grade_text(predicted, answer)
    assert (result.correct, result.score, result.reason) == (
        correct, 1.0 if correct else 0.0, "match" if correct else "mismatch"
    )


# ---------------------------------------------------------------- reward shaping

RIGHT = Grade(1.0, True, "B", "match")
WRONG = Grade(0.0, False, "A", "mismatch")
PARTIAL = Grade(0.6, True, "12", "mra 0.60")


def test_tool_reward_only_when_correct() -> None:
    assert compute_reward(RIGHT, 3, RewardConfig(), max_turns=5).as_dict() == pytest.approx(
        {"accuracy": 1.0, "tool": 0.3, "total": 1.3}
    )
    assert compute_reward(WRONG, 3, RewardConfig(), max_turns=5) == RewardParts(0.0, 0.0, 0.0)


def test_partial_mra_score_keeps_its_accuracy() -> None:
    parts = compute_reward(PARTIAL, 2, RewardConfig(tool_reward=0.5), max_turns=5)
    assert (parts.accuracy, parts.tool, parts.total) == pytest.approx((0.6, 1.0, 1.6))


def test_tool_reward_capped_by_turn_budget_by_default() -> None:
    assert compute_reward(RIGHT, 9, RewardConfig(), max_turns=4).tool == pytest.approx(0.4)


def test_tool_reward_explicit_cap() -> None:
    config = RewardConfig(max_rewarded_cells=2)
    assert compute_reward(RIGHT, 9, config, max_turns=30).tool == pytest.approx(0.2)
    assert compute_reward(RIGHT, 1, config, max_turns=30).tool == pytest.approx(0.1)


def test_tool_reward_switched_off() -> None:
    parts = compute_reward(RIGHT, 3, RewardConfig(use_tool_reward=False), max_turns=5)
    assert parts == RewardParts(1.0, 0.0, 1.0)


def test_no_cells_no_tool_reward() -> None:
    assert compute_reward(RIGHT, 0, RewardConfig(), max_turns=5) == RewardParts(1.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"tool_reward": -0.1}, "use_tool_reward=False", id="negative-tool-reward"),
        pytest.param({"tool_reward": math.nan}, "finite number", id="nan-tool-reward"),
        pytest.param({"max_rewarded_cells": -1}, "use None to cap at the env's max_turns", id="negative-cap"),
        pytest.param({"max_rewarded_cells": 2.5}, "an int >= 0 or None", id="float-cap"),
        pytest.param({"max_rewarded_cells": True}, "an int >= 0 or None", id="bool-cap"),
    ],
)
def test_reward_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RewardConfig(**kwargs)


def test_compute_reward_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="num_cells"):
        compute_reward(RIGHT, -1, RewardConfig(), max_turns=5)
    with pytest.raises(ValueError, match="max_turns"):
        compute_reward(RIGHT, 1, RewardConfig(), max_turns=0)
