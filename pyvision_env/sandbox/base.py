"""The `Sandbox` interface and the typed result of running one code cell."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Sequence

import numpy as np


class CellStatus(str, enum.Enum):
    """How a cell ended. Only `SANDBOX_FAILURE` is the infrastructure's fault."""

    OK = "ok"                       # the code ran to the end
    ERROR = "error"                 # the code raised (SyntaxError included)
    TIMEOUT = "timeout"             # the cell ran past its time limit; the worker was restarted
    SANDBOX_FAILURE = "sandbox_failure"  # the worker died or was unreachable: not the code's fault


@dataclass(frozen=True)
class CellError:
    """An exception raised by the code: its type name, message and formatted traceback."""

    name: str
    value: str
    traceback: str = ""


class Cut(NamedTuple):
    """Where a captured stream was cut: `count` characters were removed at `index` of the
    kept text (`Cut(0, 0)`: nothing was cut)."""

    index: int = 0
    count: int = 0


@dataclass(frozen=True)
class CellResult:
    """What running one cell produced.

    Attributes:
        status: how the cell ended (see `CellStatus`).
        stdout: captured standard output: valid UTF-8 with no control characters but newline
            and tab. Past `max_output_bytes` characters its middle is cut out, with no marker
            in the text: `stdout_cut` says where and how much (`truncate_middle` shows it).
        stderr: captured standard error, the same way (`stderr_cut`).
        error: the exception for `ERROR`; a description for `TIMEOUT` / `SANDBOX_FAILURE`.
        figures: images the cell showed (`plt.show()`, `display(img)`, `Image.show()`), in order,
            each an RGB `uint8` array of shape (H, W, 3).
        duration: wall-clock seconds spent running the cell.
        state_lost: True when the worker was restarted, so variables defined by earlier cells are
            gone (the preloaded media are back).
        stdout_cut, stderr_cut: where the stream was cut and how much (`Cut`).
        notes: what the sandbox did to the cell's output, for the observation: figures drawn
            smaller or dropped past the limits. Written by the sandbox, never by the cell.
    """

    status: CellStatus
    stdout: str = ""
    stderr: str = ""
    error: CellError | None = None
    figures: tuple[np.ndarray, ...] = ()
    duration: float = 0.0
    state_lost: bool = False
    stdout_cut: Cut = Cut()
    stderr_cut: Cut = Cut()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is CellStatus.OK


def truncate_middle(text: str, max_chars: int, cut: Cut = Cut()) -> str:
    """`text` with at most one omission marker, counting every character left out.

    `cut` says `cut.count` characters were already cut out of `text` at `cut.index`
    (the sandbox's cut, see `CellResult.stdout_cut`). If `text` is longer than `max_chars`
    (`<= 0`: no cap), its middle is cut too, the head keeping the larger half; both cuts are
    shown as one marker `\\n...[N characters omitted]...\\n` with the true total N.

    >>> truncate_middle("abcdefghij", 4)
    'ab\\n...[6 characters omitted]...\\nij'
    >>> truncate_middle("abcdef", 0, Cut(3, 100))
    'abc\\n...[100 characters omitted]...\\ndef'
    """
    at, omitted = cut
    at = min(max(at, 0), len(text))
    if max_chars > 0 and len(text) > max_chars:
        tail = max_chars // 2
        low, high = max_chars - tail, len(text) - tail
        if omitted:  # one gap: widen the middle to take in the earlier cut
            low, high = min(low, at), max(high, at)
        omitted += high - low
    elif omitted:
        low = high = at
    else:
        return text
    return f"{text[:low]}\n...[{omitted} characters omitted]...\n{text[high:]}"


_MiB = 1024 * 1024


@dataclass(frozen=True)
class SandboxConfig:
    """Limits shared by every backend; each has a safe default (see docs/sandbox.md).

    Time:
        cell_timeout: wall-clock seconds a cell may run before the worker is killed and
            restarted (`CellStatus.TIMEOUT`).
        cpu_seconds: CPU seconds the episode's interpreter may use in total, all its threads
            together (RLIMIT_CPU; each process a cell starts gets the same budget). This catches
            work that outlives its cell, e.g. a busy background thread; past it the worker is
            killed and the next cell reports the crash.
        start_timeout: seconds to wait for a fresh worker to be ready.

    Memory and processes:
        memory_bytes: address space of the interpreter (RLIMIT_AS; the container's memory limit
            under Docker). Allocations past it raise `MemoryError` in the cell.
        max_processes: processes plus threads the episode may have at once (RLIMIT_NPROC under
            a user id of its own; the container's pids limit under Docker). A fork bomb gets
            `BlockingIOError` / "can't start new thread" instead of taking the machine.

    Files:
        max_file_bytes: the largest file a cell may write (RLIMIT_FSIZE; `OSError` past it).
        max_open_files: file descriptors open at once (RLIMIT_NOFILE).

    Output:
        max_output_bytes: stdout and stderr are each cut to this many characters inside the
            sandbox (head and tail kept; `CellResult.stdout_cut` counts what was cut).
        max_figures: figures kept per cell; later ones are dropped (`CellResult.notes` says so).
        max_figure_pixels: a figure larger than this (H * W) is drawn smaller to fit, before
            anything that size is allocated.
    """

    # -- time
    cell_timeout: float = 30.0
    cpu_seconds: float = 600.0
    start_timeout: float = 60.0
    # -- memory and processes
    memory_bytes: int = 4096 * _MiB
    max_processes: int = 64
    # -- files
    max_file_bytes: int = 256 * _MiB
    max_open_files: int = 256
    # -- output
    max_output_bytes: int = 64 * 1024
    max_figures: int = 16
    max_figure_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        positive = ("cell_timeout", "cpu_seconds", "start_timeout", "max_figures",
                    "max_figure_pixels")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.max_output_bytes < 64:
            raise ValueError(f"max_output_bytes must be >= 64, got {self.max_output_bytes}")
        if self.memory_bytes < 256 * _MiB:
            raise ValueError(f"memory_bytes must be >= 256 MiB (numpy and matplotlib need room), "
                             f"got {self.memory_bytes}")
        if self.max_processes < 4:
            raise ValueError(f"max_processes must be >= 4 (the interpreter itself uses a few), "
                             f"got {self.max_processes}")
        if self.max_file_bytes < 1 or self.max_open_files < 32:
            raise ValueError("max_file_bytes must be >= 1 and max_open_files >= 32, got "
                             f"{self.max_file_bytes} and {self.max_open_files}")

    def max_result_bytes(self) -> int:
        """The most a well-behaved worker can send back for one cell (the host's read cap)."""
        # stdout, stderr, error message and traceback; JSON escapes a character in at most 12 bytes
        text = 4 * 12 * self.max_output_bytes
        return 64 * 1024 + text + self.max_figures * self.max_figure_pixels * 3


class Sandbox(Protocol):
    """A persistent Python interpreter for one episode at a time.

    `start` gives a fresh interpreter with the episode's media preloaded as globals
    (`image_clue_0..` as PIL RGB images, `video_clue_0..` as video readers, plus `np`, `plt`,
    `Image`); `run` executes a cell in it, keeping state between cells; `close` frees everything.
    Backends: `LocalSandbox` (a worker forked from a local zygote) and `DockerSandbox` (the same
    worker inside a container). Never raises for bad code: the result says.
    """

    config: SandboxConfig

    def start(self, images: Sequence[np.ndarray] = (), videos: Sequence[str] = ()) -> None: ...

    def run(self, code: str, timeout: float | None = None) -> CellResult: ...

    def close(self) -> None: ...
