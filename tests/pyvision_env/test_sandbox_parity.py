"""Both backends compute the same: every built-in family's reference solution solves its tasks
in each sandbox (the Docker image carries the host's numpy, Pillow and matplotlib versions).

Docker cases skip, with the reason, where no daemon or image is available.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from pyvision_env.sandbox import SandboxConfig, backend_unavailable, make_sandbox
from pyvision_env.tasks.families import FAMILIES
from pyvision_env.tasks.video_families import VIDEO_FAMILIES

SEEDS = (0, 1)


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def box(request):
    reason = backend_unavailable(request.param)
    if reason:
        pytest.skip(f"{request.param} backend unavailable: {reason}")
    with make_sandbox(request.param, SandboxConfig(cell_timeout=60.0)) as sandbox:
        yield sandbox


def _answer(box, code: str) -> str:
    result = box.run(code)
    assert result.ok, (result.error, result.stdout)
    found = re.findall(r"^ANSWER: (.*)$", result.stdout, flags=re.MULTILINE)
    assert found, f"no ANSWER line in the output:\n{result.stdout}"
    return found[-1].strip()


def _same(task, given: str) -> bool:
    if task.answer_type == "number" and task.extra.get("grading") == "mra":
        return abs(float(given) - float(task.answer)) <= 0.1 * abs(float(task.answer))
    if task.answer_type == "number":
        return float(given) == float(task.answer)
    return re.sub(r"[^A-Z0-9]", "", given.upper()) == re.sub(r"[^A-Z0-9]", "", task.answer.upper())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_image_reference_solutions_solve_in_the_sandbox(box, name):
    family = FAMILIES[name]("medium")
    for seed in SEEDS:
        task = family.generate(np.random.default_rng(2000 + seed), f"{name}/{seed}")
        box.start(images=[np.asarray(image.convert("RGB")) for image in task.images])
        given = _answer(box, family.solution_code(task))
        assert _same(task, given), f"seed {seed}: truth {task.answer!r}, solution {given!r}"


@pytest.mark.parametrize("name", sorted(VIDEO_FAMILIES))
def test_video_reference_solutions_solve_in_the_sandbox(box, name, tmp_path_factory):
    pytest.importorskip("av")
    family = VIDEO_FAMILIES[name]("easy", cache_dir=tmp_path_factory.mktemp("clips"))
    for seed in SEEDS:
        task = family.generate(np.random.default_rng(seed), f"{name}/{seed}")
        box.start(videos=list(task.videos))
        given = _answer(box, family.solution_code(task))
        assert _same(task, given), f"seed {seed}: truth {task.answer!r}, solution {given!r}"
