"""The worker: runs one episode's cells in a persistent namespace, capturing output and figures."""

from __future__ import annotations

import builtins
import codecs
import io
import linecache
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from typing import Any, Sequence

import matplotlib
import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from pyvision_env.media.video import open_video
from pyvision_env.sandbox import confine, seccomp, view
from pyvision_env.sandbox.base import (
    CellError,
    CellResult,
    CellStatus,
    Cut,
    SandboxConfig,
    truncate_middle,
)
from pyvision_env.sandbox.wire import (
    Channel,
    ChannelClosed,
    ChannelCorrupt,
    ChannelTimeout,
    encode_result,
    map_arrays,
)

CELL_FILENAME_PREFIX = "<cell-"
_MAX_INIT_BYTES = 1 << 40  # the host's own message: only its sizes are checked

# Environment variables a cell keeps; everything else (tokens, keys, cloud credentials) is dropped.
_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "MPLCONFIGDIR", "OMP_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_ENV_KEEP_PREFIXES = ("LC_",)


# ---------------------------------------------------------------------------------------------
# Output capture
# ---------------------------------------------------------------------------------------------

class CappedText(io.TextIOBase):
    """A write-only text stream that keeps the first and last characters written, within a budget.

    Memory stays bounded however much is written: the head fills once, the tail is trimmed as it
    grows. `getvalue()` returns the kept text (at most `limit` characters) and the `Cut`.
    `buffer` takes bytes (decoded as UTF-8), as `sys.stdout.buffer` does.
    """

    def __init__(self, limit: int) -> None:
        self._head_cap = limit - limit // 2
        self._tail_cap = limit // 2
        self._head: list[str] = []
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self._total = 0
        self._buffer: _BytesInto | None = None

    @property
    def buffer(self) -> _BytesInto:
        if self._buffer is None:  # made on first use: most cells never write bytes
            self._buffer = _BytesInto(self)
        return self._buffer

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        written = len(text)
        self._total += written
        room = self._head_cap - self._head_len
        if room > 0:
            self._head.append(text[:room])
            self._head_len += min(room, written)
            text = text[room:]
        if text and self._tail_cap:
            self._keep_tail(text[-self._tail_cap:])
        return written

    def _keep_tail(self, text: str) -> None:
        self._tail.append(text)
        self._tail_len += len(text)
        if self._tail_len > 2 * self._tail_cap:
            joined = "".join(self._tail)[-self._tail_cap:]
            self._tail = [joined]
            self._tail_len = len(joined)

    def getvalue(self) -> tuple[str, Cut]:
        if self._buffer is not None:
            self._buffer.flush()
        head = "".join(self._head)
        tail = "".join(self._tail)[-self._tail_cap:] if self._tail_cap else ""
        cut = self._total - len(head) - len(tail)
        return head + tail, (Cut(len(head), cut) if cut else Cut())


class _BytesInto(io.RawIOBase):
    """`sys.stdout.buffer` for a `CappedText`: bytes decoded as UTF-8 (bad bytes replaced)."""

    def __init__(self, text: CappedText) -> None:
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._text.write(self._decoder.decode(view))
        return len(view)

    def flush(self) -> None:
        self._text.write(self._decoder.decode(b"", final=True))


# ---------------------------------------------------------------------------------------------
# Figure capture
# ---------------------------------------------------------------------------------------------

def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 -> RGB uint8, compositing any transparency over white."""
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    weight = alpha.astype(np.float32) / 255.0
    blended = rgba[..., :3].astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.round(blended).astype(np.uint8)


def render_figure(fig: matplotlib.figure.Figure, dpi: float | None = None) -> np.ndarray:
    """Draw a matplotlib figure with Agg (at `dpi`, default its own) as (H, W, 3) uint8 pixels."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    original = fig.dpi
    if dpi is not None:
        fig.set_dpi(dpi)
    try:
        canvas.draw()
        return _flatten_alpha(np.asarray(canvas.buffer_rgba()))
    finally:
        fig.set_dpi(original)


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """An image-like array (H, W), (H, W, 1|3|4) -> (H, W, 3) uint8, as `plt.imshow` reads it.

    Floats are taken as 0..1, integers as 0..255; both are clipped.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"not an image array: shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        array = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.shape[2] == 4:
        return _flatten_alpha(array)
    return np.ascontiguousarray(array)


def _is_image_array(obj: Any) -> bool:
    if not isinstance(obj, np.ndarray) or obj.size == 0:
        return False
    return obj.ndim == 2 or (obj.ndim == 3 and obj.shape[2] in (1, 3, 4))


class FigureSink:
    """Collects the figures shown during one cell, within the count and pixel limits, and notes
    what it had to change (`take` returns both)."""

    def __init__(self, max_figures: int, max_pixels: int) -> None:
        self.max_figures = max_figures
        self.max_pixels = max_pixels
        self._figures: list[np.ndarray] = []
        self._notes: list[str] = []
        self._dropped = 0

    def add(self, rgb: np.ndarray) -> None:
        """Keep an image, downscaled to the pixel cap if needed; an empty one is noted, not kept."""
        if self._full():
            return
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            self._notes.append(f"an empty image ({width}x{height}) was shown; nothing to return")
            return
        scale = self._scale(width, height)
        if scale < 1.0:
            size = (max(1, int(width * scale)), max(1, int(height * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        self._figures.append(rgb)

    def add_figure(self, fig: matplotlib.figure.Figure) -> None:
        """Render and keep a figure; one over the pixel cap is drawn at a lower dpi."""
        if self._full():
            return
        width, height = (int(v) for v in fig.get_size_inches() * fig.dpi)
        if width <= 0 or height <= 0:
            self._notes.append(f"an empty figure ({width}x{height}) was shown; nothing to return")
            return
        scale = self._scale(width, height)
        self.add(render_figure(fig, fig.dpi * scale if scale < 1.0 else None))

    def _full(self) -> bool:
        if len(self._figures) < self.max_figures:
            return False
        self._dropped += 1
        return True

    def _scale(self, width: int, height: int) -> float:
        if width * height <= self.max_pixels:
            return 1.0
        scale = (self.max_pixels / (width * height)) ** 0.5
        self._notes.append(
            f"figure {len(self._figures)} was downscaled from {width}x{height} to "
            f"{max(1, int(width * scale))}x{max(1, int(height * scale))} (at most "
            f"{self.max_pixels} pixels per figure)")
        return scale

    def take(self) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
        """This cell's figures and notes (a note for dropped figures too); start afresh."""
        if self._dropped:
            self._notes.append(f"{self._dropped} more figure(s) shown in this cell were dropped "
                               f"(at most {self.max_figures} figures per cell)")
        figures, notes = tuple(self._figures), tuple(self._notes)
        self._figures, self._notes, self._dropped = [], [], 0
        return figures, notes


def install_display_hooks(sink: FigureSink) -> Any:
    """Route every way of showing a figure or image into `sink`; return the `display` function."""

    def show_figure(fig: matplotlib.figure.Figure) -> None:
        sink.add_figure(fig)
        plt.close(fig)

    def pyplot_show(*args: Any, **kwargs: Any) -> None:
        for number in plt.get_fignums():
            show_figure(plt.figure(number))

    def figure_show(self: matplotlib.figure.Figure, *args: Any, **kwargs: Any) -> None:
        show_figure(self)

    def manager_show(self: FigureManagerBase, *args: Any, **kwargs: Any) -> None:
        show_figure(self.canvas.figure)

    def image_show(self: Image.Image, *args: Any, **kwargs: Any) -> None:
        sink.add(np.asarray(self.convert("RGB")))

    def display(*objs: Any) -> None:
        """Show images (PIL, matplotlib Figure, image-like numpy array); print anything else.

        A shown pyplot figure is closed, as `plt.show()` does, so it is never returned twice.
        """
        for obj in objs:
            if isinstance(obj, Image.Image):
                image_show(obj)
            elif isinstance(obj, matplotlib.figure.Figure):
                show_figure(obj)
            elif _is_image_array(obj):
                sink.add(array_to_rgb(obj))
            else:
                print(repr(obj))

    if matplotlib.get_backend().lower() != "agg":  # the zygote has chosen Agg already
        plt.switch_backend("Agg")
    plt.show = pyplot_show
    matplotlib.figure.Figure.show = figure_show
    FigureManagerBase.show = manager_show
    Image.Image.show = image_show
    return display


# ---------------------------------------------------------------------------------------------
# Running cells
# ---------------------------------------------------------------------------------------------

def _only_cell_frames(exc_info: traceback.TracebackException, seen: set[int]) -> None:
    """Drop the worker's own frames (and library internals) from a traceback and its chain."""
    if id(exc_info) in seen:
        return
    seen.add(id(exc_info))
    exc_info.stack = traceback.StackSummary.from_list(
        [frame for frame in exc_info.stack if frame.filename.startswith(CELL_FILENAME_PREFIX)])
    for linked in (exc_info.__cause__, exc_info.__context__, *(exc_info.exceptions or ())):
        if linked is not None:
            _only_cell_frames(linked, seen)


def describe_exception(exc: BaseException, max_chars: int) -> CellError:
    """The `CellError` for an exception raised by a cell, with a traceback of the cell's frames;
    message and traceback each cut to `max_chars` (head and tail kept)."""
    exc_info = traceback.TracebackException.from_exception(exc)
    _only_cell_frames(exc_info, set())
    try:
        value = str(exc)
    except Exception:  # a broken __str__ in user code must not break the worker
        value = f"<unprintable {type(exc).__name__}>"
    return CellError(name=type(exc).__name__[:200], value=truncate_middle(value, max_chars),
                     traceback=truncate_middle("".join(exc_info.format()), max_chars))


class Session:
    """One episode's interpreter: the cells' namespace, the cell counter and the capture hooks.

    What a cell sees: `image_clue_0, image_clue_1, ...` (PIL RGB images), `video_clue_0, ...`,
    `np`, `plt` (Agg backend), `matplotlib`, `Image` (`PIL.Image`) and `display`. Figures are
    captured when they are really shown: `plt.show()` under any alias, `fig.show()`,
    `fig.canvas.manager.show()`, `display(obj)` and `PIL.Image.Image.show()`. Each is rendered to
    RGB `uint8` pixels straight from the Agg buffer (no PNG encode) and, for pyplot figures,
    closed.
    """

    def __init__(self, config: SandboxConfig, images: Sequence[np.ndarray],
                 videos: Sequence[str]) -> None:
        self.config = config
        self.sink = FigureSink(config.max_figures, config.max_figure_pixels)
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "np": np,
            "plt": plt,
            "matplotlib": matplotlib,
            "Image": Image,
            "display": install_display_hooks(self.sink),
        }
        for index, array in enumerate(images):
            image = Image.fromarray(array)
            if image.mode != "RGB":
                image = image.convert("RGB")
            self.namespace[f"image_clue_{index}"] = image
        for index, path in enumerate(videos):
            self.namespace[f"video_clue_{index}"] = open_video(path)
        self.cells = 0

    def run(self, code: str) -> CellResult:
        """Execute one cell; never raises for anything the code does (short of killing us)."""
        self.cells += 1
        filename = f"{CELL_FILENAME_PREFIX}{self.cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
        stdout = CappedText(self.config.max_output_bytes)
        stderr = CappedText(self.config.max_output_bytes)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        started = time.monotonic()
        error = None
        try:
            exec(compile(code, filename, "exec", dont_inherit=True), self.namespace)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are the cell's errors too
            error = describe_exception(exc, self.config.max_output_bytes)
        finally:
            duration = time.monotonic() - started
            try:
                figures, notes = self.sink.take()
            finally:
                sys.stdout, sys.stderr = saved
        out_text, out_cut = stdout.getvalue()
        err_text, err_cut = stderr.getvalue()
        return CellResult(
            status=CellStatus.OK if error is None else CellStatus.ERROR,
            stdout=out_text,
            stderr=err_text,
            error=error,
            figures=figures,
            duration=duration,
            stdout_cut=out_cut,
            stderr_cut=err_cut,
            notes=notes,
        )


# ---------------------------------------------------------------------------------------------
# Process setup and the message loop
# ---------------------------------------------------------------------------------------------

def start_worker(fd: int, workdir: str, uid: int, template: view.Template | None,
                 isolation: list[str], *, ahead: bool = False) -> None:
    """The worker's whole life, in a child of the zygote; never returns.

    Order matters: detach and receive the episode as root, build the filesystem view (video files
    may be readable by root only; they are opened here, under their neutral names), then confine
    (see `_confine`), report `ready`, and serve cells. A worker forked `ahead` of its episode
    enters its network namespace and its view (without videos: the zygote never hands one to an
    episode that has video files) first, then waits on `fd`, its link to the zygote, for the
    host's socket; it holds nothing of any episode until then.
    """
    try:
        channel = _detach(fd)
        if ahead:
            isolation = _enter(template, workdir, {}, isolation)
            _rehearse()
            channel = _await_host(channel)
        deadline = time.monotonic() + 60.0
        image_fds = channel.recv_fds(deadline)
        header, buffers = channel.recv(deadline, _MAX_INIT_BYTES)
        config = SandboxConfig(**header["config"])
        try:
            images, maps = map_arrays(header["images"], image_fds)
            if ahead and header["videos"]:
                raise ValueError("a worker forked ahead has no video files in its view")
            videos = _receive_videos(header, buffers, workdir)
            media = {f"{view.MEDIA_DIR}/video_{index}{_suffix(path)}": path
                     for index, path in enumerate(header["videos"])}
            if not ahead:
                isolation = _enter(template, workdir, media, isolation)
            if template is not None:
                videos = [*media, *videos]
            else:
                videos = [*header["videos"], *videos]
            session = Session(config, images, videos)
            del images  # the PIL images hold copies: unmap the host's pages
            for mapped in maps:
                mapped.close()
            Image.core.set_blocks_max(0)  # PIL's default again: `_rehearse`'s block is used
        except Exception as exc:
            channel.send({"op": "failed", "message": f"{type(exc).__name__}: {exc}"})
            os._exit(0)
        isolation = isolation + _confine(config, workdir, uid)
        channel.send({"op": "ready", "isolation": isolation, "uid": os.getuid()})
        serve(channel, session)
    finally:
        os._exit(0)


def _enter(template: view.Template | None, workdir: str, media: dict[str, str],
           isolation: list[str]) -> list[str]:
    """A network namespace of our own (if not in one yet) and the filesystem view (if any)."""
    if "network" not in isolation and confine.unshare(confine.CLONE_NEWNET):
        isolation = [*isolation, "network"]
    if template is not None:
        view.enter_view(template, workdir, media, new_proc="pid" in isolation)
        isolation = [*isolation, "filesystem"]
    return isolation


def _rehearse() -> None:
    """Before the episode (a worker forked ahead): run a throwaway cell and touch one block of
    PIL's image memory, so the copy-on-write faults of a first cell and the page faults of the
    episode's first image are taken here rather than on the way to the first result."""
    Image.core.set_blocks_max(1)  # the freed block stays, faulted in, for the first image
    Image.new("RGB", (1024, Image.core.get_block_size() // 4096))
    session = Session(SandboxConfig(), [], [])
    encode_result(session.run("x = 1"))
    linecache.cache.clear()


def _await_host(link: Channel) -> Channel:
    """Wait for the zygote to pass the host's socket over `link`; exit if it never does."""
    try:
        message, fds, _, _ = socket.recv_fds(link.sock, 16, 1)
    except OSError:
        os._exit(0)
    link.close()
    if message != b"go" or len(fds) != 1:
        os._exit(0)
    return Channel(socket.socket(fileno=fds[0]))


def _detach(fd: int) -> Channel:
    """Own session, die with the zygote, fds 0-2 on /dev/null, every other inherited fd closed."""
    os.setsid()
    confine.die_with_parent()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    os.close(devnull)
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    return Channel(socket.socket(fileno=fd))


def _suffix(path: str) -> str:
    """A file's extension, if it looks like one (`.mp4`); the rest of its name is not passed on."""
    suffix = os.path.splitext(path)[1]
    return suffix if suffix[1:].isalnum() and len(suffix) <= 8 else ""


def _receive_videos(header: dict[str, Any], buffers: list[bytearray], workdir: str) -> list[str]:
    """Videos sent by value (Docker, the frame's buffers), written into the working directory
    under neutral names; files given by path must exist (they are bound into the view)."""
    for path in header["videos"]:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cannot read video {path!r}: no such file")
    paths = []
    sent = zip(header["video_files"], buffers)
    for index, (name, data) in enumerate(sent):
        path = os.path.join(workdir, f"video_{len(header['videos']) + index}{_suffix(name)}")
        with open(path, "wb") as file:
            file.write(data)
        paths.append(path)
    return paths


def _confine(config: SandboxConfig, workdir: str, uid: int) -> list[str]:
    """Private cwd, scrubbed environment, rlimits, our own uid, Landlock, seccomp. Returns what
    applied."""
    os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    os.chdir(workdir)
    os.umask(0o077)
    kept = {key: value for key, value in os.environ.items()
            if key in _ENV_KEEP or key.startswith(_ENV_KEEP_PREFIXES)}
    os.environ.clear()
    os.environ.update(kept, HOME=workdir, TMPDIR=workdir, PWD=workdir, MPLCONFIGDIR=workdir)
    tempfile.tempdir = None
    applied = confine.apply_limits(
        cpu_seconds=config.cpu_seconds, memory_bytes=config.memory_bytes,
        max_processes=config.max_processes, max_file_bytes=config.max_file_bytes,
        max_open_files=config.max_open_files)
    if confine.drop_privileges(uid):
        applied.append("user")
    if confine.no_new_privileges():
        applied += ["landlock-" + part for part in confine.restrict_with_landlock(
            [workdir, os.devnull])]
        if seccomp.install_filter():
            applied.append("seccomp")
    return applied


def serve(channel: Channel, session: Session) -> None:
    """Answer `run` messages with results until the host closes the connection.

    Each result carries the request's sequence number, so the host can tell a frame the code
    forged or left behind from the answer to this cell. A process the cell forked returns here
    too: it exits instead of answering for the worker.
    """
    worker = os.getpid()
    while True:
        try:
            header, _ = channel.recv()
        except (ChannelClosed, ChannelCorrupt, ChannelTimeout):
            return
        if header.get("op") != "run":
            return
        result = session.run(header["code"])
        if os.getpid() != worker:
            os._exit(0)
        reply, buffers = encode_result(result)
        channel.send({**reply, "seq": header.get("seq")}, buffers)
