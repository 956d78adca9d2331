"""The host side shared by both backends: `ZygoteClient` and `ForkedSandbox`."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from pyvision_env.sandbox.base import CellError, CellResult, CellStatus, SandboxConfig
from pyvision_env.sandbox.wire import (
    Channel,
    ChannelClosed,
    ChannelCorrupt,
    ChannelTimeout,
    decode_result,
    sealed_memory,
)

_MAX_CONTROL_MESSAGE = 64 * 1024
_warned: set[str] = set()


class SandboxStartError(RuntimeError):
    """A worker could not be started or could not load the episode's media."""


@dataclass
class _Worker:
    """A running worker: its id at the zygote, its socket, and the read end of its status pipe."""

    id: int
    workdir: str
    channel: Channel
    status_fd: int
    uid: int = -1
    isolation: tuple[str, ...] = ()
    cells: int = 0  # requests sent: the sequence number of the last one


class ZygoteClient:
    """A connection to a running zygote; `spawn` and `kill` are safe to call from any thread."""

    def __init__(self, control: socket.socket, timeout: float) -> None:
        self._control = control
        self._lock = threading.Lock()
        self.owner_pid = os.getpid()
        self.info = self._receive(timeout)

    @property
    def alive(self) -> bool:
        return self._control.fileno() >= 0 and self.owner_pid == os.getpid()

    def spawn(self, timeout: float, *, videos: bool = False) -> _Worker:
        """A new worker process; the caller sends it the episode (see `ForkedSandbox`). `videos`:
        the episode has video files to bind into the worker's view (no worker forked ahead)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status_read, status_write = os.pipe()
        try:
            reply = self._request({"op": "spawn", "videos": videos},
                                  [theirs.fileno(), status_write], timeout)
        except BaseException:
            ours.close()
            os.close(status_read)
            raise
        finally:
            theirs.close()
            os.close(status_write)
        return _Worker(int(reply["id"]), str(reply["workdir"]), Channel(ours), status_read)

    def kill(self, worker_id: int, timeout: float = 30.0) -> None:
        """Kill every process of the worker's episode and remove its files; wait until done."""
        self._request({"op": "kill", "id": worker_id}, [], timeout)

    def close(self) -> None:
        """Disconnect: the zygote then kills its episodes and exits."""
        self._control.close()

    def _request(self, message: dict[str, Any], fds: list[int], timeout: float) -> dict[str, Any]:
        with self._lock:
            if not self.alive:
                raise SandboxStartError("the sandbox zygote is no longer running")
            try:
                socket.send_fds(self._control, [json.dumps(message).encode()], fds)
                reply = self._receive(timeout)
            except (OSError, SandboxStartError) as exc:
                self._control.close()
                raise SandboxStartError(f"lost the sandbox zygote: {exc}") from None
        if not reply.get("ok"):
            raise SandboxStartError(f"the sandbox zygote refused: {reply.get('error')}")
        return reply

    def _receive(self, timeout: float) -> dict[str, Any]:
        if not select.select([self._control], [], [], timeout)[0]:
            raise SandboxStartError(f"the sandbox zygote did not answer within {timeout:g} s")
        message = self._control.recv(_MAX_CONTROL_MESSAGE)
        if not message:
            raise SandboxStartError("the sandbox zygote closed the connection")
        return json.loads(message)


class ForkedSandbox:
    """A `Sandbox` whose workers come from a zygote (the host side of both backends).

    One sandbox serves one episode at a time and is not thread-safe; use one per env.

    A `ForkedSandbox` asks a zygote (local process or container) for a worker per episode, sends it
    the media, and then talks to the worker directly over its own socket (`wire` format). Subclasses
    only say where their zygote comes from (`_acquire_zygote` / `_release_zygote`).

    Who is at fault (the rule behind `CellStatus`, see docs/sandbox.md): whatever the code can
    cause is the code's; `SANDBOX_FAILURE`, which trainers drop, only for what it cannot.
    - the cell runs past its limit, or stops reading its requests: `TIMEOUT`; every process of
      the episode is killed and a new worker is started with the same media (`state_lost=True`).
    - the worker dies at any time, while a cell runs or between cells, by any signal or exit
      (`os._exit`, a segfault, its own signals, an rlimit it lowered, the OOM killer choosing
      it), or sends bytes that are not the result of this
      request: `ERROR` with an `InterpreterCrashed` error, and a new worker as above.
    - a worker cannot be started or restarted, or the zygote is gone (it reports every worker's
      end; no report means it died): `SANDBOX_FAILURE`.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self._images: tuple[np.ndarray, ...] = ()
        self._videos: tuple[str, ...] = ()
        self._zygote: ZygoteClient | None = None
        self._worker: _Worker | None = None
        self._started = False
        self.granted_isolation: tuple[str, ...] = ()  # what the backend adds around the worker

    # -- what a backend provides -----------------------------------------------------------

    def _acquire_zygote(self) -> ZygoteClient:
        raise NotImplementedError

    def _release_zygote(self, zygote: ZygoteClient) -> None:
        """Called when an episode ends; the default keeps nothing."""

    def _video_payload(self) -> tuple[list[str], list[str], list[bytes]]:
        """(paths the worker opens, names of videos sent by value, their bytes)."""
        return list(self._videos), [], []

    # -- the Sandbox protocol ----------------------------------------------------------------

    @property
    def workdir(self) -> str | None:
        """The episode's working directory, as the worker sees it (None when not started)."""
        return None if self._worker is None else self._worker.workdir

    @property
    def worker_pid(self) -> int | None:
        """The worker's pid as the zygote sees it (the host's pid for `LocalSandbox`)."""
        return None if self._worker is None else self._worker.id

    @property
    def worker_uid(self) -> int | None:
        """The user id the worker runs as (its own, after the privilege drop)."""
        return None if self._worker is None else self._worker.uid

    @property
    def isolation(self) -> tuple[str, ...]:
        """What confinement the current worker got: "pid", "network", "user", rlimits, ..."""
        return () if self._worker is None else self._worker.isolation

    def start(self, images: Sequence[np.ndarray] = (), videos: Sequence[str] = ()) -> None:
        """Start a fresh interpreter (and empty working directory) with these media preloaded.

        Raises:
            ValueError: an image is not a uint8 (H, W[, C]) array.
            SandboxStartError: the worker could not start or could not load the media.
        """
        checked = tuple(_as_image_array(image, index) for index, image in enumerate(images))
        self.close()
        self._images = checked
        self._videos = tuple(os.path.abspath(os.fspath(video)) for video in videos)
        self._started = True
        try:
            self._zygote = self._acquire_zygote()
            self._worker = self._spawn_worker()
        except BaseException:
            self.close()
            raise

    def run(self, code: str, timeout: float | None = None) -> CellResult:
        """Run one cell in the episode's interpreter. Bad code never raises: the result says.

        Raises:
            RuntimeError: the sandbox was not started (or was closed).
            ValueError: `timeout` is not positive.
        """
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.run() needs a started sandbox: "
                               "call start() first")
        limit = self.config.cell_timeout if timeout is None else float(timeout)
        if limit <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        started = time.monotonic()
        worker = self._worker
        if worker is None:  # an earlier restart failed: try again, blame ourselves
            return self._restart(started, CellStatus.SANDBOX_FAILURE, CellError(
                "SandboxFailure", "the sandbox had no running interpreter"))
        worker.cells += 1
        try:
            worker.channel.send({"op": "run", "code": code, "seq": worker.cells},
                                deadline=started + limit)
        except ChannelTimeout:  # the interpreter stopped reading (e.g. a thread holds the GIL)
            return self._timeout(started, limit)
        except ChannelClosed:
            return self._crashed(worker, started, 2.0,
                                 "after an earlier cell ended, before this cell could run")
        return self._collect(worker, started, limit)

    def close(self) -> None:
        """Kill the worker (and everything it started) and remove its working directory."""
        worker, self._worker = self._worker, None
        zygote, self._zygote = self._zygote, None
        self._started = False
        if worker is not None:
            self._kill(worker, zygote)
        if zygote is not None:
            self._release_zygote(zygote)

    def __enter__(self) -> ForkedSandbox:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- workers -------------------------------------------------------------------------------

    def _spawn_worker(self) -> _Worker:
        """Get a worker from the zygote, send it the episode, and wait until it is ready."""
        if self._zygote is None or not self._zygote.alive:
            self._zygote = self._acquire_zygote()
        deadline = time.monotonic() + self.config.start_timeout
        paths, names, blobs = self._video_payload()
        try:
            worker = self._zygote.spawn(self.config.start_timeout, videos=bool(paths))
        except SandboxStartError:
            if self._zygote.alive:
                raise
            self._zygote = self._acquire_zygote()  # it died: one more try with a fresh zygote
            worker = self._zygote.spawn(self.config.start_timeout, videos=bool(paths))
        try:
            worker.channel.send_fds([sealed_memory(image) for image in self._images])
            worker.channel.send(
                {"op": "init", "config": asdict(self.config),
                 "images": [list(image.shape) for image in self._images],
                 "videos": paths, "video_files": names}, blobs, deadline)
            reply, _ = worker.channel.recv(deadline, _MAX_CONTROL_MESSAGE)
        except (ChannelClosed, ChannelTimeout, ChannelCorrupt) as exc:
            self._kill(worker, self._zygote)
            raise SandboxStartError(f"the sandbox worker did not start ({exc}); "
                                    f"exit status: {_exit_status(worker, 0.0)}") from None
        except BaseException:
            self._kill(worker, self._zygote)
            raise
        if reply.get("op") != "ready":
            self._kill(worker, self._zygote)
            raise SandboxStartError(
                f"the sandbox worker could not load the episode's media: {reply.get('message')}")
        worker.uid = int(reply["uid"])
        worker.isolation = tuple(dict.fromkeys([*self.granted_isolation, *reply["isolation"]]))
        _warn_if_weak(type(self).__name__, worker.isolation)
        return worker

    def _collect(self, worker: _Worker, started: float, limit: float) -> CellResult:
        """Wait for the cell's result, a crash, or the deadline.

        A crash shows as the end of the connection: when the worker dies, so does every process
        of its episode (its PID namespace, or the zygote's kill of its user id), and with them
        the last holder of the worker's end of the socket.
        """
        deadline = started + limit
        try:
            header, buffers = worker.channel.recv(deadline, self.config.max_result_bytes())
            result = decode_result(
                header, buffers, max_output=self.config.max_output_bytes,
                max_figures=self.config.max_figures,
                max_figure_pixels=self.config.max_figure_pixels, seq=worker.cells,
                duration=time.monotonic() - started)
        except ChannelTimeout:
            return self._timeout(started, limit)
        except ChannelClosed:
            return self._crashed(worker, started, 5.0, "while running this cell")
        except ChannelCorrupt as exc:
            return self._restart(started, CellStatus.ERROR, CellError(
                "InterpreterCrashed", f"the cell broke the sandbox's result channel ({exc})"))
        return result

    def _crashed(self, worker: _Worker, started: float, wait: float, when: str) -> CellResult:
        """The worker is gone. The zygote reports every worker's end; no report means the zygote
        itself is gone, which no cell can cause."""
        status = _exit_status(worker, wait)
        if status == "zygote gone":
            return self._restart(started, CellStatus.SANDBOX_FAILURE, CellError(
                "SandboxFailure", f"the sandbox's fork server stopped {when}"))
        return self._restart(started, CellStatus.ERROR, CellError(
            "InterpreterCrashed", _crash_message(status, when)))

    def _timeout(self, started: float, limit: float) -> CellResult:
        return self._restart(started, CellStatus.TIMEOUT, CellError(
            "TimeoutError", f"the cell ran past its {limit:g} s time limit"))

    def _restart(self, started: float, status: CellStatus, error: CellError) -> CellResult:
        """Replace the worker after a timeout or crash; report `status`, or a failure to restart."""
        duration = time.monotonic() - started
        worker, self._worker = self._worker, None
        if worker is not None:
            self._kill(worker, self._zygote)
        try:
            self._worker = self._spawn_worker()
        except SandboxStartError as exc:
            status = CellStatus.SANDBOX_FAILURE
            error = CellError("SandboxFailure", f"{error.value}; restarting the interpreter "
                                                f"failed: {exc}")
        return CellResult(status=status, error=error, duration=duration, state_lost=True)

    @staticmethod
    def _kill(worker: _Worker, zygote: ZygoteClient | None) -> None:
        if zygote is not None and zygote.alive:
            with contextlib.suppress(SandboxStartError):
                zygote.kill(worker.id)
        worker.channel.close()
        os.close(worker.status_fd)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _as_image_array(image: Any, index: int) -> np.ndarray:
    """The image as a uint8 array the sandbox keeps for restarts: a read-only array over memory
    nothing writes to (`media.cached_array`'s, or `np.asarray` of a PIL image) is kept as it is,
    anything else is copied, so later writes by the caller never reach a restarted worker."""
    array = image if _immutable(image) else np.array(image, copy=True)
    shaped = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    if array.dtype != np.uint8 or not shaped:
        raise ValueError(
            f"images[{index}] must be a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4); "
            f"got dtype {array.dtype} and shape {array.shape}")
    return array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array


def _immutable(image: Any) -> bool:
    """A read-only array whose memory is a read-only array that owns it, or `bytes`."""
    while isinstance(image, np.ndarray):
        if image.flags.writeable:
            return False
        if image.base is None:
            return True
        image = image.base
    return isinstance(image, bytes)


def _exit_status(worker: _Worker, wait: float) -> str:
    """The worker's exit as the zygote reported it ("exit 7", "signal 11"); "zygote gone" when
    the pipe closed with no report (only the zygote's death does that); "unknown" when no
    report came within `wait` seconds."""
    if select.select([worker.status_fd], [], [], wait)[0]:
        with contextlib.suppress(OSError):
            return os.read(worker.status_fd, 64).decode(errors="replace") or "zygote gone"
    return "unknown"


def _crash_message(status: str, when: str) -> str:
    """What happened to the interpreter, from the zygote's report ("signal 9", "exit 3")."""
    kind, _, value = status.partition(" ")
    if kind == "signal" and value.isdigit():
        try:
            how = f"killed by signal {value} ({signal.Signals(int(value)).name})"
        except ValueError:
            how = f"killed by signal {value}"
    elif kind == "exit":
        how = f"exited with code {value}"
    else:
        how = "stopped"
    return f"the interpreter crashed ({how}) {when}"


def _warn_if_weak(backend: str, isolation: tuple[str, ...]) -> None:
    missing = [part for part in ("network", "user") if part not in isolation]
    key = f"{backend}:{missing}"
    if missing and key not in _warned:
        _warned.add(key)
        what = {"network": "cells CAN reach the network (no network namespace: run as root, "
                           "allow unprivileged user namespaces, or use sandbox='docker')",
                "user": "cells run as the host's user (no privilege drop: run as root or use "
                        "sandbox='docker')"}
        warnings.warn(f"{backend}: weaker isolation on this host: "
                      + "; ".join(what[part] for part in missing), RuntimeWarning, stacklevel=4)
