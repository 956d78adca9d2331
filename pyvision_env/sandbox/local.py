"""`LocalSandbox`: one persistent worker process per episode, forked from a pre-warmed fork server.

Life of a sandbox: `start(images)` makes a private working directory and a fresh worker with the
images as globals; `run(code)` sends the cell over a `multiprocessing` pipe (pickle) and waits at
most the cell timeout for the `CellResult`; `close()` kills the worker and removes the directory.

Who is at fault (the rule behind `CellStatus`):
- the cell runs past its limit: `TIMEOUT`; the worker's process group is killed and a new worker
  is started with the same media (`state_lost=True`).
- the worker dies *while a cell runs* (`os._exit`, a segfault, a signal, the OOM killer): that is
  the code's doing, so `ERROR` with an `InterpreterCrashed` error, and a new worker as above.
- a worker cannot be started, or is found dead *before* the cell was handed to it: we cannot
  blame the code, so `SANDBOX_FAILURE` (a trainer drops such samples); a new worker is started.

Starting: the "forkserver" start method with this package's worker module preloaded, so a
worker costs a fork plus unpickling the images (milliseconds), and forking happens in the
single-threaded fork server, which makes `start()` safe from a host process with threads. Where
"forkserver" is unavailable, "spawn" is used (each worker then imports numpy, PIL, matplotlib).
The fork server is shared by the whole host process and lives until it exits; the preload list is
set the first time a `LocalSandbox` starts. As with any spawn/forkserver child, the host's
`__main__` script is imported (as `__mp_main__`) in each worker: keep its top level cheap and
guarded by `if __name__ == "__main__":`.

Isolation done here: own process group and session (kill covers processes the cell started,
unless they leave the group), parent-death signal, fds 0-2 on /dev/null, a private cwd, and an
environment reduced to an allowlist (`worker._ENV_KEEP`) with HOME/TMPDIR set to the cwd.
Not done yet (the hardening issue; `_spawn_worker` is the one place it goes): rlimits, no network,
namespaces / seccomp, a zygote started with a clean environment. Until then a cell can still read
the original environment from `/proc/<pid>/environ` of itself or the fork server, and can reach
the network and the host's files as the host user.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

import numpy as np

from pyvision_env.sandbox.base import CellError, CellResult, CellStatus, SandboxConfig

WORKER_MODULE = "pyvision_env.sandbox.worker"

_context_lock = threading.Lock()
_context: Any = None


class SandboxStartError(RuntimeError):
    """A worker could not be started or could not load the episode's media."""


def _mp_context() -> Any:
    """The multiprocessing context workers start from: forkserver (worker preloaded) or spawn."""
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                _context = multiprocessing.get_context("forkserver")
                _context.set_forkserver_preload([WORKER_MODULE])
            else:
                _context = multiprocessing.get_context("spawn")
        return _context


def _worker_entry(conn: Connection, config: SandboxConfig, images: Sequence[np.ndarray],
                  videos: Sequence[str], workdir: str) -> None:
    """Runs in the new process. Imports the worker there, so the host never imports matplotlib."""
    from pyvision_env.sandbox.worker import serve

    serve(conn, config, images, videos, workdir)


def _as_image_array(image: Any, index: int) -> np.ndarray:
    array = np.array(image, copy=True)
    shaped = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    if array.dtype != np.uint8 or not shaped:
        raise ValueError(
            f"images[{index}] must be a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4); "
            f"got dtype {array.dtype} and shape {array.shape}")
    return array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array


def _crash_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    return (f"the interpreter crashed ({how}) while running this cell; it was restarted, so "
            "variables from earlier cells are lost (the input images are loaded again)")


@dataclass
class _Worker:
    """A running worker process and the parent's end of its pipe."""

    process: Any
    conn: Connection


class LocalSandbox:
    """Runs cells in a local worker process; see the module docstring for the failure rules.

    One sandbox serves one episode at a time and is not thread-safe; use one per env.

    Example:
        >>> import numpy as np
        >>> with LocalSandbox(SandboxConfig(cell_timeout=10)) as sandbox:
        ...     sandbox.start(images=[np.zeros((30, 40, 3), dtype=np.uint8)])
        ...     result = sandbox.run("print(image_clue_0.size)")
        >>> result.status.value, result.stdout
        ('ok', '(40, 30)\\n')
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self._images: tuple[np.ndarray, ...] = ()
        self._videos: tuple[str, ...] = ()
        self._workdir: str | None = None
        self._worker: _Worker | None = None

    # -- the Sandbox protocol ---------------------------------------------------------------

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
        self._workdir = tempfile.mkdtemp(prefix="pyvision-sandbox-")
        try:
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
        if self._workdir is None:
            raise RuntimeError("LocalSandbox.run() needs a started sandbox: call start() first")
        limit = self.config.cell_timeout if timeout is None else float(timeout)
        if limit <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        started = time.monotonic()
        if self._worker is None:  # an earlier restart failed: try again, blame ourselves
            return self._restart(started, CellStatus.SANDBOX_FAILURE, CellError(
                "SandboxFailure", "the sandbox had no running interpreter; a new one was started"))
        worker = self._worker
        try:
            worker.conn.send(("run", code))
        except (OSError, ValueError):
            return self._restart(started, CellStatus.SANDBOX_FAILURE, CellError(
                "SandboxFailure", "the interpreter had stopped before this cell was sent; it was "
                "restarted, so variables from earlier cells are lost"))
        if not wait([worker.conn, worker.process.sentinel], limit):
            return self._restart(started, CellStatus.TIMEOUT, CellError(
                "TimeoutError", f"the cell exceeded the {limit:g} s time limit and was stopped; "
                "the interpreter was restarted, so variables from earlier cells are lost "
                "(the input images are loaded again)"))
        try:
            result = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            return self._restart(started, CellStatus.ERROR, CellError(
                "InterpreterCrashed", _crash_message(worker.process.exitcode)))
        return replace(result, duration=time.monotonic() - started)

    def close(self) -> None:
        """Kill the worker (and whatever it started) and remove the working directory."""
        worker, self._worker = self._worker, None
        if worker is not None:
            _kill(worker)
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- context manager and cleanup ----------------------------------------------------------

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- workers -------------------------------------------------------------------------------

    def _spawn_worker(self) -> _Worker:
        """Start a worker with this episode's media and wait until it is ready.

        The single place a worker process is made: sandbox hardening (rlimits, namespaces,
        seccomp, a dedicated zygote) slots in here.
        """
        context = _mp_context()
        parent_conn, child_conn = context.Pipe(duplex=True)
        process = context.Process(
            target=_worker_entry, name="pyvision-sandbox", daemon=True,
            args=(child_conn, self.config, self._images, self._videos, self._workdir))
        try:
            process.start()
        except Exception as exc:
            parent_conn.close()
            raise SandboxStartError(f"could not start a sandbox worker process: {exc}") from exc
        finally:
            child_conn.close()
        worker = _Worker(process, parent_conn)
        try:
            _await_ready(worker, self.config.start_timeout)
        except BaseException:
            _kill(worker)
            raise
        return worker

    def _restart(self, started: float, status: CellStatus, error: CellError) -> CellResult:
        """Replace the worker after a timeout or crash; report `status`, or a failure to restart."""
        duration = time.monotonic() - started
        worker, self._worker = self._worker, None
        if worker is not None:
            _kill(worker)
        try:
            self._worker = self._spawn_worker()
        except SandboxStartError as exc:
            status = CellStatus.SANDBOX_FAILURE
            error = CellError("SandboxFailure", f"{error.value}; restarting it failed: {exc}")
        return CellResult(status=status, error=error, duration=duration, state_lost=True)


def _await_ready(worker: _Worker, timeout: float) -> None:
    if not wait([worker.conn, worker.process.sentinel], timeout):
        raise SandboxStartError(f"the sandbox worker was not ready within {timeout:g} s "
                                "(SandboxConfig.start_timeout)")
    try:
        kind, detail = worker.conn.recv()
    except (EOFError, OSError):
        worker.process.join(timeout=5)
        raise SandboxStartError(
            f"the sandbox worker exited during start-up (exit code {worker.process.exitcode}); "
            f"check that {WORKER_MODULE} imports in this environment") from None
    if kind != "ready":
        raise SandboxStartError(f"the sandbox worker could not load the episode's media: {detail}")


def _kill(worker: _Worker) -> None:
    """SIGKILL the worker's process group (the worker and what it started), then reap it."""
    pid = worker.process.pid
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            worker.process.kill()
        worker.process.join(timeout=5)
    worker.conn.close()
    with contextlib.suppress(ValueError):
        worker.process.close()
