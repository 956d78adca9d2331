"""Built-in image task families: determinism, ids, knobs, and reference solutions that really solve."""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pyvision_env.tasks.builtin import BuiltinTasks  # noqa: E402
from pyvision_env.tasks.families import FAMILIES  # noqa: E402
from pyvision_env.tasks.families.base import DIFFICULTIES, font  # noqa: E402

SOLVER_SEEDS = 10


def run_solution(family, task) -> str:
    """Execute the family's reference cell the way the sandbox would, and return its ANSWER."""
    out = io.StringIO()
    namespace = {"image_clue_0": task.images[0], "np": np, "plt": plt, "Image": Image}
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(family.solution_code(task), namespace)
    plt.close("all")
    found = re.findall(r"^ANSWER: (.*)$", out.getvalue(), flags=re.MULTILINE)
    assert found, f"no ANSWER line in the output:\n{out.getvalue()}"
    return found[-1]


def normalise(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def is_correct(task, given: str) -> bool:
    if task.answer_type == "number":
        return given.strip() == task.answer
    return normalise(given) == normalise(task.answer)


def leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def generate(name: str, seed: int, difficulty: str = "medium"):
    family = FAMILIES[name](difficulty)
    return family, family.generate(np.random.default_rng(seed), f"{name}/{seed:016x}")


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_reference_solution_solves(name, difficulty):
    family = FAMILIES[name](difficulty)
    misses = []
    for seed in range(SOLVER_SEEDS):
        task = family.generate(np.random.default_rng(1000 + seed), f"{name}/{seed}")
        given = run_solution(family, task)
        if not is_correct(task, given):
            misses.append((seed, given, task.answer))
    needed = SOLVER_SEEDS if difficulty != "hard" else int(np.ceil(0.95 * SOLVER_SEEDS))
    assert SOLVER_SEEDS - len(misses) >= needed, f"misses (seed, given, truth): {misses}"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_same_seed_same_task_and_different_seeds_differ(name):
    _, a = generate(name, 7)
    _, b = generate(name, 7)
    _, c = generate(name, 8)
    assert a.question == b.question and a.answer == b.answer and a.extra == b.extra
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_task_record(name):
    family, task = generate(name, 3)
    image = task.images[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.width >= 2000 and image.width * image.height > 3 * 1280 * 28 * 28
    assert task.source == f"builtin/{name}"
    assert {"family", "difficulty", "knobs", "solver"} <= set(task.extra)
    assert task.extra["family"] == name and task.extra["difficulty"] == "medium"
    if task.answer_type == "choice":
        assert task.answer in "AB"[: len(task.choices)]
        assert all(f"({letter}) {text}" in task.question for letter, text in zip("AB", task.choices))
    assert FAMILIES[name].description and "\n" not in FAMILIES[name].description


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_solver_parameters_do_not_hold_the_answer(name):
    for seed in range(5):
        _, task = generate(name, seed)
        solver = task.extra["solver"]
        assert all(str(v) != task.answer for v in leaves(solver)), solver
        if task.answer_type == "text":
            assert task.answer not in repr(solver)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_chance_answer_has_the_answer_format(name):
    family, task = generate(name, 4)
    guesses = [family.chance_answer(task, np.random.default_rng(s)) for s in range(30)]
    if task.answer_type == "choice":
        assert set(guesses) == {"A", "B"}
    elif task.answer_type == "number":
        assert all(g.isdigit() for g in guesses) and len(set(guesses)) > 3
    else:
        assert all(len(g) == len(task.answer) for g in guesses)
    assert sum(is_correct(task, g) for g in guesses) < 0.8 * len(guesses)


def test_decisive_text_is_tiny():
    for difficulty in DIFFICULTIES:
        _, task = generate("tiny_text", 0, difficulty)
        solver = task.extra["solver"]
        _, top, _, bottom = font(solver["font_size"]).getbbox(solver["alphabet"])
        assert bottom - top < task.images[0].height / 100


def test_count_marks_are_small():
    for difficulty in DIFFICULTIES:
        family, task = generate("count_marks", 0, difficulty)
        assert family.knobs.mark_size[1] < task.images[0].height / 100


def test_difficulty_presets_and_knob_overrides():
    easy, hard = FAMILIES["tiny_text"]("easy"), FAMILIES["tiny_text"]("hard")
    assert easy.knobs.font_size > hard.knobs.font_size
    family = FAMILIES["tiny_text"]("easy", width=2100, height=1600)
    task = family.generate(np.random.default_rng(0), "t")
    assert task.images[0].size == (2100, 1600)
    assert task.extra["knobs"]["width"] == 2100 and task.extra["knobs"]["font_size"] == easy.knobs.font_size


def test_unknown_knob_and_difficulty_are_rejected():
    with pytest.raises(TypeError, match="valid knobs: .*font_size"):
        FAMILIES["tiny_text"](font_sise=9)
    with pytest.raises(ValueError, match="difficulty"):
        FAMILIES["count_marks"]("extreme")


def test_builtin_tasks_sample_is_seeded_and_ids_round_trip():
    tasks = BuiltinTasks(difficulty="easy")
    a = tasks.sample(np.random.default_rng(11))
    b = tasks.sample(np.random.default_rng(11))
    assert a.id == b.id and np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    family, seed = a.id.split("/")
    assert family in FAMILIES and len(seed) == 16
    again = tasks.from_id(a.id)
    assert again.answer == a.answer and again.question == a.question
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(a.images[0]))


def test_builtin_tasks_draws_every_family():
    tasks = BuiltinTasks(["count_marks", "tiny_text"], difficulty="easy")
    rng = np.random.default_rng(0)
    seen = {tasks.sample(rng).extra["family"] for _ in range(8)}
    assert seen == {"count_marks", "tiny_text"}
    assert tasks.family("tiny_text").difficulty == "easy"


def test_builtin_tasks_rejects_unknown_names_with_a_suggestion():
    with pytest.raises(ValueError, match="'tiny_text'"):
        BuiltinTasks(["tiny_txt"])
    with pytest.raises(ValueError, match="task id"):
        BuiltinTasks().from_id("tiny_text-123")
    with pytest.raises(ValueError, match="not in this source"):
        BuiltinTasks(["count_marks"]).family("tiny_text")
