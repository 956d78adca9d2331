"""The shared answer vocabulary: a leaf module that `tasks` and `rewards` use without importing each other."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import numpy as np
import pytest

from pyvision_env import answers
from pyvision_env.answers import (
    bare_letter,
    choice_index,
    choice_letter,
    extract_letter,
    letter_of_option_text,
    parse_choices,
    random_choice_letter,
)

PACKAGE = Path(answers.__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, lazily or not (`from a.b import c` gives `a.b` and `a.b.c`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imports_of(folder: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(PACKAGE)): imported_modules(path) for path in sorted((PACKAGE / folder).rglob("*.py"))
    }


@pytest.mark.parametrize(("folder", "other"), [("tasks", "rewards"), ("rewards", "tasks")])
def test_tasks_and_rewards_do_not_import_each_other(folder, other):
    offenders = {
        file: sorted(m for m in modules if m == f"pyvision_env.{other}" or m.startswith(f"pyvision_env.{other}."))
        for file, modules in imports_of(folder).items()
    }
    assert {file: found for file, found in offenders.items() if found} == {}


def test_answers_is_a_leaf():
    assert {m for m in imported_modules(PACKAGE / "answers.py") if m.startswith("pyvision_env")} == set()


def test_the_examples_in_the_docstrings_hold():
    result = doctest.testmod(answers)
    assert result.attempted > 10 and result.failed == 0


def test_letters_and_indices_round_trip():
    assert [choice_letter(i) for i in range(4)] == ["A", "B", "C", "D"]
    assert [choice_index(letter) for letter in "ABCZ"] == [0, 1, 2, 25]
    with pytest.raises(ValueError, match="0..25"):
        choice_letter(26)
    with pytest.raises(ValueError, match="A..Z"):
        choice_index("b")


@pytest.mark.parametrize(
    ("text", "bare", "extracted"),
    [
        ("B", "B", "B"),
        ("(c)", "C", "C"),
        ("B.", "B", "B"),
        ("\\text{D}", "D", "D"),
        ("Option B", None, "B"),
        ("Answer: (b)", None, "B"),
        ("B. a red car", None, "B"),
        ("a red car", None, None),
        ("12", None, None),
    ],
)
def test_letter_forms(text, bare, extracted):
    assert (bare_letter(text), extract_letter(text)) == (bare, extracted)


def test_option_text_names_its_letter():
    assert letter_of_option_text("  the Dog. ", ["cat", "dog"]) == "B"
    assert letter_of_option_text("bird", ["cat", "dog"]) is None


def test_random_letters_stay_among_the_options():
    rng = np.random.default_rng(0)
    assert {random_choice_letter(rng, 3) for _ in range(200)} == {"A", "B", "C"}


def test_listed_options_parse_back():
    choices = ["red, then blue", "blue, then red", "green"]
    assert parse_choices("Which?\n" + answers.option_lines(choices)) == tuple(choices)
    assert parse_choices("Which? " + answers.inline_options(["cat", "dog"])) == ("cat", "dog")
