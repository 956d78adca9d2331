"""Latency of `LocalSandbox`: start, a trivial cell, a crop-and-show cell, against a raw-pipe floor.

The floor is the least a cell can cost with this design: a pickle round trip over a
`multiprocessing` Pipe to an already warm process that `exec`s the code, with no capture.

    python benchmarks/sandbox_step.py [--repeats 200]   (package installed, or PYTHONPATH=.)
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from typing import Callable

import numpy as np

from pyvision_env.sandbox import LocalSandbox, SandboxConfig

CROP_CELL = """\
crop = image_clue_0.crop((600, 400, 1400, 1000))
plt.figure(figsize=(8, 6), dpi=100)
plt.imshow(crop)
plt.axis("off")
plt.show()
"""


def _echo_exec(conn) -> None:
    namespace: dict = {}
    while True:
        code = conn.recv()
        if code is None:
            return
        exec(code, namespace)
        conn.send(("ok", "", ""))


def _timed(step: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    return samples


def _summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered), p99


def _floor(repeats: int) -> list[float]:
    context = multiprocessing.get_context("forkserver")
    parent, child = context.Pipe()
    process = context.Process(target=_echo_exec, args=(child,), daemon=True)
    process.start()
    child.close()

    def round_trip() -> None:
        parent.send("x = 1")
        parent.recv()

    _timed(round_trip, 20)
    samples = _timed(round_trip, repeats)
    parent.send(None)
    process.join()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    image = np.random.default_rng(0).integers(0, 256, size=(1500, 2000, 3), dtype=np.uint8)

    sandbox = LocalSandbox(SandboxConfig(cell_timeout=30))
    first = _timed(lambda: sandbox.start(images=[image]), 1)[0]
    rows = {
        "start() with a 2000x1500 image":
            _timed(lambda: sandbox.start(images=[image]), args.repeats // 2),
        "start() with no media": _timed(sandbox.start, args.repeats // 2),
    }
    sandbox.start(images=[image])
    for _ in range(3):
        sandbox.run(CROP_CELL)
    rows["cell `x = 1`"] = _timed(lambda: sandbox.run("x = 1"), args.repeats)
    result = sandbox.run(CROP_CELL)
    assert result.ok and result.figures[0].shape == (600, 800, 3), result
    rows["cell: crop + plt.show() (800x600 figure)"] = _timed(
        lambda: sandbox.run(CROP_CELL), args.repeats // 2)
    sandbox.close()
    floor_median, floor_p99 = _summary(_floor(args.repeats))

    print(f"first start() in this process (fork server + preload): {first * 1e3:.0f} ms")
    print(f"{'step':45s} {'median ms':>10s} {'p99 ms':>10s} {'x floor (median)':>17s}")
    print(f"{'floor: pickle round trip + exec, warm process':45s} "
          f"{floor_median * 1e3:10.3f} {floor_p99 * 1e3:10.3f} {1.0:17.1f}")
    for name, samples in rows.items():
        median, p99 = _summary(samples)
        print(f"{name:45s} {median * 1e3:10.3f} {p99 * 1e3:10.3f} {median / floor_median:17.1f}")


if __name__ == "__main__":
    main()
