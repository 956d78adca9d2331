"""Sandbox latency end to end through `PyVisionEnv`: our backends against PyVision and Jupyter.

Rows, each measured in this one run through `PyVisionEnv(tasks=[...], sandbox=...)`:

- local / docker: this package's backends (docker only when a daemon and the image are up).
- pyvision-style: built the way PyVision-RL's sandbox is, a `multiprocessing.Process` per
  episode started on the first cell, a `Queue` pair, `exec` in a globals dict, figures
  captured by `savefig` to PNG, base64, decoded again by the parent.
- jupyter: a fresh `ipykernel` per episode through `jupyter_client` (figures come back as the
  inline backend's PNGs), when jupyter_client and ipykernel are installed.

Columns: `env.reset` alone; `env.reset` plus the first trivial cell (a fresh interpreter that has
answered: the pyvision-style sandbox starts its process there); `env.step` with a trivial cell;
`env.step` with the typical PyVision cell, a crop of a 2000x1500 task image shown with
`plt.show()`. The floor is a trivial `exec` in a warm process over a pipe with pickle and no
capture, measured in the same run. The targets come from the sandbox issue.

    python benchmarks/sandbox.py [--quick]      (package installed in the environment)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import multiprocessing
import os
import queue
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from pyvision_env import PyVisionEnv
from pyvision_env.sandbox import (
    CellError,
    CellResult,
    CellStatus,
    SandboxConfig,
    backend_unavailable,
    make_sandbox,
)
from pyvision_env.tasks.task import Task

TRIVIAL_CELL = "x = 1"
CROP_CELL = """\
crop = image_clue_0.crop((600, 400, 1400, 1000))
plt.figure(figsize=(8, 6), dpi=100)
plt.imshow(crop)
plt.axis("off")
plt.show()
"""
FIGURE_SHAPE = (600, 800, 3)


def action(code: str) -> str:
    """A model turn holding one code cell."""
    return f"Let me look.\n<code>\n```python\n{code}\n```\n</code>"


def task_image() -> Image.Image:
    """A 2000x1500 photo-like image: smooth gradients plus sensor-like noise."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:1500, 0:2000]
    base = np.stack([cols / 2000 * 200, rows / 1500 * 200, (cols + rows) / 3500 * 255], axis=2)
    noisy = base + rng.normal(0, 12, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Baseline (c): a sandbox built the way PyVision-RL's is
# ---------------------------------------------------------------------------------------------

def _pyvision_worker(inbox: Any, outbox: Any) -> None:
    """The child: import, preload the images, then exec each cell in one globals dict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list[str] = []

    def capture_show(*args: Any, **kwargs: Any) -> None:
        for number in plt.get_fignums():
            buffer = io.BytesIO()
            plt.figure(number).savefig(buffer, format="png")
            figures.append(base64.b64encode(buffer.getvalue()).decode())
            plt.close(number)

    plt.show = capture_show
    namespace: dict[str, Any] = {"np": np, "plt": plt, "Image": Image}
    for index, array in enumerate(inbox.get()):
        namespace[f"image_clue_{index}"] = Image.fromarray(array)
    while (code := inbox.get()) is not None:
        stdout, error = io.StringIO(), None
        try:
            with contextlib.redirect_stdout(stdout):
                exec(code, namespace)
        except Exception as exc:
            error = (type(exc).__name__, str(exc), traceback.format_exc())
        outbox.put({"stdout": stdout.getvalue(), "error": error, "figures": figures[:]})
        figures.clear()


class PyVisionStyleSandbox:
    """Baseline: a `multiprocessing.Process` per episode, started on first use; a Queue pair."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._images: list[np.ndarray] = []
        self._process: multiprocessing.Process | None = None

    def start(self, images: Sequence[np.ndarray] = (), videos: Sequence[str] = ()) -> None:
        self.close()
        self._images = [np.asarray(image) for image in images]

    def run(self, code: str, timeout: float | None = None) -> CellResult:
        started = time.monotonic()
        if self._process is None:
            self._inbox, self._outbox = multiprocessing.Queue(), multiprocessing.Queue()
            self._process = multiprocessing.Process(
                target=_pyvision_worker, args=(self._inbox, self._outbox), daemon=True)
            self._process.start()
            self._inbox.put(self._images)
        self._inbox.put(code)
        try:
            reply = self._outbox.get(timeout=timeout or self.config.cell_timeout)
        except queue.Empty:
            self.close()
            return CellResult(CellStatus.TIMEOUT, error=CellError("TimeoutError", "timed out"))
        figures = tuple(np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                        for data in reply["figures"])
        error = None if reply["error"] is None else CellError(*reply["error"])
        return CellResult(CellStatus.OK if error is None else CellStatus.ERROR,
                          stdout=reply["stdout"], error=error, figures=figures,
                          duration=time.monotonic() - started)

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._inbox.close()
            self._outbox.close()
            self._process = None


# ---------------------------------------------------------------------------------------------
# Baseline (d): a Jupyter kernel per episode
# ---------------------------------------------------------------------------------------------

class JupyterSandbox:
    """Baseline: a fresh ipykernel per episode; cells and figures (inline PNGs) over ZeroMQ."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._manager: Any = None
        self._client: Any = None
        self._scratch = tempfile.TemporaryDirectory(prefix="pyvision-bench-jupyter-")

    def start(self, images: Sequence[np.ndarray] = (), videos: Sequence[str] = ()) -> None:
        from jupyter_client import KernelManager

        self.close()
        self._manager = KernelManager(kernel_name="python3")
        self._manager.start_kernel()
        self._client = self._manager.client()
        self._client.start_channels()
        self._client.wait_for_ready(timeout=self.config.start_timeout)
        lines = ["import numpy as np", "import matplotlib.pyplot as plt", "from PIL import Image"]
        for index, image in enumerate(images):
            path = os.path.join(self._scratch.name, f"image_{index}.npy")
            np.save(path, np.asarray(image))
            lines.append(f"image_clue_{index} = Image.fromarray(np.load({path!r}))")
        assert self.run("\n".join(lines)).ok

    def run(self, code: str, timeout: float | None = None) -> CellResult:
        started = time.monotonic()
        stdout: list[str] = []
        figures: list[np.ndarray] = []

        def collect(message: dict[str, Any]) -> None:
            content = message["content"]
            if message["msg_type"] == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif message["msg_type"] in ("display_data", "execute_result"):
                png = content["data"].get("image/png")
                if png is not None:
                    image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
                    figures.append(np.asarray(image))

        reply = self._client.execute_interactive(
            code, timeout=timeout or self.config.cell_timeout, output_hook=collect)
        content = reply["content"]
        error = None
        if content["status"] != "ok":
            error = CellError(content["ename"], content["evalue"], "\n".join(content["traceback"]))
        return CellResult(CellStatus.OK if error is None else CellStatus.ERROR,
                          stdout="".join(stdout), error=error, figures=tuple(figures),
                          duration=time.monotonic() - started)

    def close(self) -> None:
        if self._manager is not None:
            self._client.stop_channels()
            self._manager.shutdown_kernel(now=True)
            self._manager = self._client = None


def jupyter_unavailable() -> str | None:
    """Why the Jupyter baseline cannot run, or None."""
    try:
        import ipykernel  # noqa: F401
        import jupyter_client  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install jupyter_client ipykernel)"
    return None


# ---------------------------------------------------------------------------------------------
# The floor: a trivial exec in a warm process over a pipe, with pickle and no capture
# ---------------------------------------------------------------------------------------------

def _echo_exec(conn: Any) -> None:
    namespace: dict[str, Any] = {}
    while (code := conn.recv()) is not None:
        exec(code, namespace)
        conn.send(("ok", "", ""))


def floor_samples(repeats: int) -> list[float]:
    """Round trips of `TRIVIAL_CELL` to a warm exec loop over a `multiprocessing.Pipe`."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_echo_exec, args=(child,), daemon=True)
    process.start()
    child.close()

    def round_trip() -> None:
        parent.send(TRIVIAL_CELL)
        parent.recv()

    timed(round_trip, 50)
    samples = timed(round_trip, repeats)
    parent.send(None)
    process.join()
    return samples


# ---------------------------------------------------------------------------------------------
# Measuring through the env
# ---------------------------------------------------------------------------------------------

def timed(step: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of each of `repeats` calls."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    """(median, p99) in seconds."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[round(0.99 * (len(ordered) - 1))]


@dataclass
class Row:
    """One backend's samples, in seconds."""

    name: str
    reset: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)  # reset plus the first trivial cell
    bare: list[float] = field(default_factory=list)  # sandbox start + first cell, no env
    step: list[float] = field(default_factory=list)
    figure: list[float] = field(default_factory=list)
    figure_pixels: np.ndarray | None = None


def measure(name: str, sandbox: Any, task: Task, resets: int, steps: int, figures: int) -> Row:
    """Reset, first-cell, trivial-step and figure-step samples through `PyVisionEnv`, and the
    sandbox's own start plus first cell without the env."""
    row = Row(name, bare=_bare_starts(sandbox, np.asarray(task.images[0]), resets))
    env = PyVisionEnv(tasks=[task], sandbox=sandbox, max_turns=10**6, max_images=10**6,
                      cell_timeout=60.0)
    try:
        for episode in range(resets + 2):  # two warm-up episodes: zygote, container, imports
            began = time.perf_counter()
            env.reset(seed=episode)
            reset = time.perf_counter() - began
            observation = env.step(action(TRIVIAL_CELL))[0]
            assert "Error" not in observation["text"], observation["text"]
            if episode >= 2:
                row.reset.append(reset)
                row.ready.append(time.perf_counter() - began)
        row.step = _steps(env, TRIVIAL_CELL, steps, per_episode=100)
        row.figure = _steps(env, CROP_CELL, figures, per_episode=10)
        observation = env.step(action(CROP_CELL))[0]
        (row.figure_pixels,) = observation["images"]
    finally:
        env.close()
    return row


def _bare_starts(sandbox: Any, image: np.ndarray, count: int) -> list[float]:
    """`start(images=[image])` plus a trivial cell on the sandbox alone, as the env calls them."""
    config = SandboxConfig(cell_timeout=60.0)
    box = make_sandbox(sandbox, config) if isinstance(sandbox, str) else sandbox(config)
    try:
        def start_and_run() -> None:
            box.start(images=[image])
            assert box.run(TRIVIAL_CELL).ok

        timed(start_and_run, 2)
        return timed(start_and_run, count)
    finally:
        box.close()


def _steps(env: PyVisionEnv, code: str, count: int, per_episode: int) -> list[float]:
    """`count` timed steps of one cell, in episodes of `per_episode` steps (after one warm-up)."""
    samples: list[float] = []
    while len(samples) < count:
        env.reset()
        env.step(action(code))
        for _ in range(min(per_episode, count - len(samples))):
            began = time.perf_counter()
            env.step(action(code))
            samples.append(time.perf_counter() - began)
    return samples


def print_table(rows: list[Row], floor: list[float]) -> None:
    """Median and p99 of each column, in milliseconds."""
    columns = ("env.reset", "reset+1st cell", "step: x = 1", "step: crop+show",
               "no env: start+1st")
    print(f"{'backend':16s}" + "".join(f"{name:>22s}" for name in columns))
    print(f"{'':16s}" + f"{'median / p99 ms':>22s}" * len(columns))
    for row in rows:
        cells = ""
        for samples in (row.reset, row.ready, row.step, row.figure, row.bare):
            median, p99 = summary(samples)
            cells += f"{median * 1e3:>12.3f} / {p99 * 1e3:>7.3f}"
        print(f"{row.name:16s}{cells}")
    median, p99 = summary(floor)
    print(f"{'floor (pipe)':16s}{'':44s}{median * 1e3:>12.3f} / {p99 * 1e3:>7.3f}")


def print_targets(rows: dict[str, Row], floor: list[float]) -> None:
    """Each of the issue's targets, measured on medians, with PASS or MISS."""
    def median(samples: list[float]) -> float:
        return summary(samples)[0]

    checks = []
    for name in ("local", "docker"):
        if name not in rows:
            continue
        row = rows[name]
        checks.append((f"{name}: trivial step / floor", median(row.step) / median(floor),
                       "<=", 3.0))
        if "jupyter" in rows:
            checks.append((f"{name}: jupyter step / trivial step",
                           median(rows["jupyter"].step) / median(row.step), ">=", 10.0))
        checks.append((f"{name}: pyvision-style reset+1st cell / ours",
                       median(rows["pyvision-style"].ready) / median(row.ready), ">=", 20.0))
        checks.append((f"{name}: the same, sandbox alone (no env)",
                       median(rows["pyvision-style"].bare) / median(row.bare), ">=", 20.0))
        checks.append((f"{name}: pyvision-style figure step / ours",
                       median(rows["pyvision-style"].figure) / median(row.figure), ">=", 2.0))
    print(f"\n{'target (medians)':48s} {'ratio':>8s}  {'target':>8s}")
    for label, ratio, sense, bound in checks:
        met = ratio <= bound if sense == "<=" else ratio >= bound
        print(f"{label:48s} {ratio:8.2f}  {sense} {bound:<5g} {'PASS' if met else 'MISS'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0

    def count(n: int) -> int:
        return max(5, int(n * scale))

    image = task_image()
    task = Task(id="bench/crop", question="What is in the centre?", answer="A",
                images=(image,), source="bench")
    plan: list[tuple[str, Any, int]] = [("local", "local", 200)]
    if (reason := backend_unavailable("docker")) is None:
        plan.append(("docker", "docker", 200))
    else:
        print(f"docker: skipped ({reason})")
    plan.append(("pyvision-style", PyVisionStyleSandbox, 40))
    if (reason := jupyter_unavailable()) is None:
        plan.append(("jupyter", JupyterSandbox, 20))
    else:
        print(f"jupyter: skipped ({reason})")

    rows = {name: measure(name, sandbox, task, count(resets), count(1000), count(100))
            for name, sandbox, resets in plan}
    floor = floor_samples(count(5000))
    print(f"\n{os.cpu_count()} CPUs; task image 2000x1500; figure {FIGURE_SHAPE[1]}x"
          f"{FIGURE_SHAPE[0]}; start method {multiprocessing.get_start_method()}\n")
    print_table(list(rows.values()), floor)
    print_targets(rows, floor)

    reference = rows["pyvision-style"].figure_pixels
    for name, row in rows.items():
        pixels = row.figure_pixels
        same = pixels is not None and reference is not None and np.array_equal(pixels, reference)
        shape = None if pixels is None else pixels.shape
        differ = ""
        if not same and pixels is not None and reference is not None \
                and pixels.shape == reference.shape:
            diff = np.abs(pixels.astype(int) - reference.astype(int))
            differ = (f" ({np.count_nonzero(diff.max(axis=2))} pixels differ, mean abs "
                      f"difference {diff.mean():.3f}: another matplotlib version renders them)")
        print(f"figure pixels, {name}: shape {shape}, identical to pyvision-style: {same}{differ}")


if __name__ == "__main__":
    main()
