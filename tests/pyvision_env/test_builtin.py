"""Built-in task sources across families: the no-tool guesses, keyed seeds, and the registered ids."""

from __future__ import annotations

import multiprocessing
import os
import re

import gymnasium as gym
import numpy as np
import pytest

import pyvision_env  # noqa: F401  (registers the ids)
from pyvision_env.answers import CHOICE_LETTERS
from pyvision_env.registration import PRESETS
from pyvision_env.tasks import keys
from pyvision_env.tasks.builtin import ALL_FAMILIES, BuiltinTasks, builtin_family
from pyvision_env.tasks.families.base import DIFFICULTIES
from pyvision_env.tasks.video_families import VIDEO_FAMILIES


def drafted_tasks(name: str, difficulty: str) -> list:
    """Tasks of one family and difficulty, without rendering any clip (`draw`, then `make_task`).

    20 of a video family (drawing a clip's plan is cheap), 3 of an image family (drawing paints it).
    """
    family = ALL_FAMILIES[name](difficulty)
    count = 20 if name in VIDEO_FAMILIES else 3
    return [family.make_task(f"t{s}", family.draw(np.random.default_rng(s))) for s in range(count)]


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
@pytest.mark.parametrize("name", sorted(ALL_FAMILIES))
def test_chance_answer_fits_the_tasks_own_difficulty(name, difficulty):
    """The no-tool agent asks one default (medium) family for every task's guess: it must follow the task."""
    guesser = builtin_family(name)
    tasks = drafted_tasks(name, difficulty)
    guesses = [guesser.chance_answer(task, np.random.default_rng(i)) for i, task in enumerate(tasks)]
    task = tasks[0]
    if task.answer_type == "choice":
        assert all(g in CHOICE_LETTERS[: len(t.choices)] for g, t in zip(guesses, tasks)), guesses
    elif task.answer_type == "text":
        assert all(len(g) == len(t.answer) for g, t in zip(guesses, tasks)), (guesses, [t.answer for t in tasks])
    elif "an integer from" in task.question:
        low, high = map(int, re.search(r"an integer from (\d+) to (\d+)", task.question).groups())
        assert all(low <= int(g) <= high for g in guesses), (low, high, guesses)
    else:
        answers, values = [float(t.answer) for t in tasks], [float(g) for g in guesses]
        assert all(0 <= v <= 2 * max(answers) for v in values), (max(answers), values)
        ratio = np.median(values) / np.median(answers)
        assert 1 / 1.5 < ratio < 1.5, f"median guess {np.median(values)} vs median answer {np.median(answers)}"


def test_chance_answers_differ_between_difficulties():
    guesser = builtin_family("flash_time")
    easy, hard = drafted_tasks("flash_time", "easy")[0], drafted_tasks("flash_time", "hard")[0]
    rng = np.random.default_rng
    assert max(float(guesser.chance_answer(easy, rng(s))) for s in range(50)) <= 20
    assert max(float(guesser.chance_answer(hard, rng(s))) for s in range(50)) > 60


# ---------------------------------------------------------------- keyed seeds


def test_same_key_same_task_other_key_other_task():
    a = BuiltinTasks(["count_marks"], difficulty="easy", seed_key=b"one")
    b = BuiltinTasks(["count_marks"], difficulty="easy", seed_key=b"one")
    c = BuiltinTasks(["count_marks"], difficulty="easy", seed_key=b"two")
    first, again, other = (s.sample(np.random.default_rng(5)) for s in (a, b, c))
    assert first.id == again.id == other.id  # the id is public: the same seed draws the same index
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))
    assert c.from_id(first.id).question == other.question


def test_the_index_in_an_id_is_not_the_generator_seed():
    """Knowing the id (and the code) is not enough to regenerate the task without the key."""
    tasks = BuiltinTasks(["count_marks"], difficulty="easy", seed_key=b"secret")
    task = tasks.sample(np.random.default_rng(0))
    index = int(task.id.split("/")[1], 16)
    family = tasks.family("count_marks")
    naive = family.generate(np.random.default_rng(index), task.id)
    assert not np.array_equal(np.asarray(naive.images[0]), np.asarray(task.images[0]))


def test_shared_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(keys.SEED_KEY_ENV, "public benchmark 2026")
    assert BuiltinTasks(["tiny_text"]).seed_key == b"public benchmark 2026"
    monkeypatch.delenv(keys.SEED_KEY_ENV)
    assert BuiltinTasks(["tiny_text"]).seed_key == keys.installation_key()


def test_installation_key_is_made_once_owner_only(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "installation.key"
    monkeypatch.setenv(keys.KEY_FILE_ENV, str(path))
    key = keys.installation_key()
    assert len(key) == keys.KEY_BYTES and path.read_bytes() == key
    assert path.stat().st_mode & 0o077 == 0
    assert keys.installation_key() == key and sorted(p.name for p in path.parent.iterdir()) == [path.name]


def _key_in_a_new_process(path: str) -> str:
    os.environ[keys.KEY_FILE_ENV] = path
    return keys.installation_key().hex()


def test_processes_racing_to_make_the_key_agree_on_one(tmp_path):
    path = str(tmp_path / "raced.key")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        found = pool.map(_key_in_a_new_process, [path] * 8)
    assert len(set(found)) == 1 and bytes.fromhex(found[0]) == (tmp_path / "raced.key").read_bytes()


def test_damaged_key_says_how_to_fix(tmp_path, monkeypatch):
    path = tmp_path / "short.key"
    path.write_bytes(b"abc")
    monkeypatch.setenv(keys.KEY_FILE_ENV, str(path))
    with pytest.raises(ValueError, match="damaged .*delete it"):
        keys.installation_key()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_key_folder_says_how_to_fix(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    monkeypatch.setenv(keys.KEY_FILE_ENV, str(folder / "installation.key"))
    try:
        with pytest.raises(OSError, match=f"cannot create the installation key .*{keys.KEY_FILE_ENV}"):
            keys.installation_key()
    finally:
        folder.chmod(0o700)


# ---------------------------------------------------------------- registered ids

# The ids registered before they were derived from the family registries: they must not change.
REGISTERED_IDS = {
    "PyVisionImage-v0",
    "PyVisionImageNoHint-v0",
    "PyVisionImage-TinyText-v0",
    "PyVisionImage-CountMarks-v0",
    "PyVisionImage-CompareObjects-v0",
    "PyVisionImage-ChartValue-v0",
    "PyVisionVideo-v0",
    "PyVisionVideo-FlashTime-v0",
    "PyVisionVideo-BlinkCount-v0",
    "PyVisionVideo-EventOrder-v0",
    "PyVisionVideo-DigitAtTime-v0",
    "PyVisionVideo-DotDistance-v0",
}


def test_registered_ids_are_unchanged():
    assert {preset.id for preset in PRESETS} == REGISTERED_IDS
    assert REGISTERED_IDS <= set(gym.registry)


@pytest.mark.parametrize("name", sorted(ALL_FAMILIES))
def test_every_family_has_its_own_id(name):
    family = ALL_FAMILIES[name]
    kind = "Video" if family.__module__.startswith("pyvision_env.tasks.video_families") else "Image"
    spec = gym.spec(f"PyVision{kind}-{family.title}-v0")
    assert spec.kwargs["families"] == (name,)
