"""The `Sandbox` interface and the typed result of running one code cell."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np


class CellStatus(str, enum.Enum):
    """How a cell ended. Only `SANDBOX_FAILURE` is the infrastructure's fault."""

    OK = "ok"                       # the code ran to the end
    ERROR = "error"                 # the code raised (SyntaxError included)
    TIMEOUT = "timeout"             # the cell ran past its time limit; the worker was restarted
    SANDBOX_FAILURE = "sandbox_failure"  # the worker died or could not be reached: not the code's fault


@dataclass(frozen=True)
class CellError:
    """An exception raised by the code: its type name, message and formatted traceback."""

    name: str
    value: str
    traceback: str = ""


@dataclass(frozen=True)
class CellResult:
    """What running one cell produced.

    Attributes:
        status: how the cell ended (see `CellStatus`).
        stdout: captured standard output, truncated head+tail with a marker if too long.
        stderr: captured standard error, truncated the same way.
        error: the exception for `ERROR`; a description for `TIMEOUT` / `SANDBOX_FAILURE`.
        figures: images the cell showed (`plt.show()`, `display(img)`, `Image.show()`), in order,
            each an RGB `uint8` array of shape (H, W, 3).
        duration: wall-clock seconds spent running the cell.
        state_lost: True when the worker was restarted, so variables defined by earlier cells are
            gone (the preloaded media are back).
    """

    status: CellStatus
    stdout: str = ""
    stderr: str = ""
    error: CellError | None = None
    figures: tuple[np.ndarray, ...] = ()
    duration: float = 0.0
    state_lost: bool = False

    @property
    def ok(self) -> bool:
        return self.status is CellStatus.OK


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and behaviour shared by every backend.

    Attributes:
        cell_timeout: wall-clock seconds a cell may run before the worker is killed and restarted.
        max_output_bytes: stdout and stderr are each cut to this many characters (head and tail
            kept, with a marker in between) inside the sandbox, before they reach the env.
        max_figures: figures kept per cell; later ones are dropped with a note on stderr.
        max_figure_pixels: a figure larger than this (H * W) is downscaled to fit.
        start_timeout: seconds to wait for a fresh worker to be ready.
    """

    cell_timeout: float = 30.0
    max_output_bytes: int = 64 * 1024
    max_figures: int = 16
    max_figure_pixels: int = 4096 * 4096
    start_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.cell_timeout <= 0:
            raise ValueError(f"cell_timeout must be > 0 seconds, got {self.cell_timeout}")
        if self.max_output_bytes < 64:
            raise ValueError(f"max_output_bytes must be >= 64, got {self.max_output_bytes}")


class Sandbox(Protocol):
    """A persistent Python interpreter for one episode at a time.

    `start` gives a fresh interpreter with the episode's media preloaded as globals
    (`image_clue_0..` as PIL RGB images, `video_clue_0..` as video readers, plus `np`, `plt`,
    `Image`); `run` executes a cell in it, keeping state between cells; `close` frees everything.
    Backends: `LocalSandbox` (a worker process). Never raises for bad code: the result says.
    """

    config: SandboxConfig

    def start(self, images: Sequence[np.ndarray] = (), videos: Sequence[str] = ()) -> None: ...

    def run(self, code: str, timeout: float | None = None) -> CellResult: ...

    def close(self) -> None: ...
