"""Soak: a thousand short episodes in one process leave no processes, descriptors or memory behind.

Each episode is what an env does per reset: `start` with an image, then a few cells (state kept,
a figure, an error, a file in the working directory). Every so often a cell times out or
crashes the interpreter, so the restart path is soaked too. The host process, the zygote and
the episodes' own working directories are measured once warm and again at the end;
run with `-s` for the report. Only this test's own episodes are counted, so sandboxes that other
processes on the machine run at the same time do not disturb it.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass

import numpy as np
import pytest

from pyvision_env.sandbox import CellStatus, SandboxConfig, backend_unavailable, make_sandbox

IMAGE = np.random.default_rng(1).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
CELLS = (
    ("total = int(np.asarray(image_clue_0).sum())\nopen('notes.txt', 'w').write(str(total))",
     CellStatus.OK),
    ("print(open('notes.txt').read() == str(total))", CellStatus.OK),
    ("plt.imshow(image_clue_0.crop((0, 0, 40, 30)))\nplt.show()", CellStatus.OK),
    ("1 / 0", CellStatus.ERROR),
)
# Every RESTART_EVERY-th episode also times out a cell, then crashes the interpreter.
RESTART_EVERY = 50
RESTART_CELLS = (("while True:\n    pass", CellStatus.TIMEOUT),
                 ("import os\nos._exit(9)", CellStatus.ERROR))
RSS_SLACK = 24 * 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """What the sandbox costs the machine at one moment."""

    processes: int  # the host's descendants plus the zygote's (the container's, under Docker)
    host_fds: int
    host_rss: int
    zygote_fds: int
    zygote_rss: int
    leftovers: int  # working directories of this test's episodes


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _descendants(root: int, tree: dict[int, list[int]]) -> set[int]:
    found, todo = set(), [root]
    while todo:
        for child in tree.get(todo.pop(), ()):
            found.add(child)
            todo.append(child)
    return found


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _zygote_pid(backend: str) -> int:
    """The zygote's pid as the host sees it."""
    if backend == "local":
        from pyvision_env.sandbox.local import local_zygote

        return int(local_zygote().info["pid"])
    from pyvision_env.sandbox.docker import HOST_LABEL, docker_client

    mine = {"label": f"{HOST_LABEL}={os.getpid()}"}
    containers = docker_client().containers.list(filters=mine)
    assert len(containers) == 1, "the soak expects exactly one sandbox container of its own"
    return int(containers[0].attrs["State"]["Pid"])  # the zygote is the container's init


def _leftovers(zygote: int, workdirs: list[str]) -> int:
    """This test's episode directories still present (as the zygote sees its file system)."""
    return sum(os.path.lexists(f"/proc/{zygote}/root{path}") for path in workdirs)


def _usage(zygote: int, workdirs: list[str]) -> Usage:
    gc.collect()
    tree = _children()
    processes = _descendants(os.getpid(), tree) | _descendants(zygote, tree)
    return Usage(
        processes=len(processes),
        host_fds=len(os.listdir("/proc/self/fd")),
        host_rss=_rss(os.getpid()),
        zygote_fds=len(os.listdir(f"/proc/{zygote}/fd")),
        zygote_rss=_rss(zygote),
        leftovers=_leftovers(zygote, workdirs),
    )


def _settled(zygote: int, start: Usage, workdirs: list[str], seconds: float = 10.0) -> Usage:
    """Usage once the last episode's teardown has finished (the zygote reaps after replying,
    and its cleaner removes files after that)."""
    deadline = time.monotonic() + seconds
    while True:
        now = _usage(zygote, workdirs)
        done = (now.processes <= start.processes and now.zygote_fds <= start.zygote_fds
                and now.leftovers == 0)
        if done or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def _episode(box, number: int, workdirs: list[str]) -> None:
    box.start(images=[IMAGE])
    workdirs.append(box.workdir)
    cells = CELLS + (RESTART_CELLS if number % RESTART_EVERY == 0 else ())
    for code, expected in cells:
        result = box.run(code, timeout=0.5 if expected is CellStatus.TIMEOUT else None)
        assert result.status is expected, (number, code, result.error)
    assert box.run("print('still here')").stdout == "still here\n"
    workdirs.append(box.workdir)  # a restart gave the episode a new one


@pytest.mark.slow
@pytest.mark.parametrize("backend,episodes", [
    ("local", 1000), pytest.param("docker", 100, marks=pytest.mark.docker)])
def test_soak_leaves_nothing_behind(backend, episodes):
    reason = backend_unavailable(backend)
    if reason:
        pytest.skip(f"{backend} backend unavailable: {reason}")
    from pyvision_env.sandbox.docker import shutdown_pools

    shutdown_pools()  # one container, so the Docker zygote is the one measured
    warm: list[str] = []
    workdirs: list[str] = []
    with make_sandbox(backend, SandboxConfig(cell_timeout=10.0)) as box:
        for number in range(1, 6):  # warm: zygote, container, first figure, lazy imports
            _episode(box, number * RESTART_EVERY, warm)
        box.close()
        zygote = _zygote_pid(backend)
        start = _settled(zygote, _usage(zygote, warm), warm)
        began = time.monotonic()
        for number in range(1, episodes + 1):
            _episode(box, number, workdirs)
        box.close()
        end = _settled(zygote, start, workdirs)
    print(f"\nsoak {backend}: {episodes} episodes in {time.monotonic() - began:.1f} s; "
          f"start {start}; end {end}")
    assert end.processes == start.processes
    assert end.host_fds == start.host_fds
    assert end.zygote_fds == start.zygote_fds
    assert end.leftovers == start.leftovers == 0
    assert end.host_rss - start.host_rss < RSS_SLACK
    assert end.zygote_rss - start.zygote_rss < RSS_SLACK
