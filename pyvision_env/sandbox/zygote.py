"""The zygote: a pre-warmed process with a clean environment that forks a worker per episode."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from pyvision_env.sandbox import confine

PRELOAD = ("numpy", "PIL.Image", "matplotlib", "matplotlib.pyplot", "matplotlib.figure",
           "matplotlib.backends.backend_agg", "pyvision_env.sandbox.worker")
OPTIONAL_PRELOAD = ("decord", "av", "pyvision_env.media.video")
MAX_MESSAGE = 64 * 1024
_SIGCHLD = 17
_CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220}
_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


@dataclass
class _Episode:
    pid: int
    uid: int
    workdir: str
    status_fd: int
    namespaced: bool


def preload() -> list[str]:
    """Import what cells use, so each worker only has to fork. Returns the optional ones found."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in PRELOAD:
        importlib.import_module(name)
    import matplotlib.pyplot as plt
    import numpy as np

    plt.switch_backend("Agg")  # resolved once here, not in every worker
    # Draw one small figure, so fonts, caches and lazy imports are ready in every worker.
    figure = plt.figure(figsize=(1, 1))
    figure.gca().imshow(np.zeros((2, 2, 3), dtype=np.uint8))
    figure.gca().set_title("warm")
    figure.canvas.draw()
    plt.close(figure)
    found = []
    for name in OPTIONAL_PRELOAD:
        try:
            importlib.import_module(name)
            found.append(name)
        except Exception:  # an optional decoder that fails to import is simply not offered
            pass
    return found


def _clone(flags: int) -> int:
    """fork() into new namespaces (`clone` without a new stack); -1 if refused or unsupported."""
    number = _CLONE_SYSCALL.get(os.uname().machine)
    if number is None:
        return -1
    libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the call
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = libc.syscall(ctypes.c_long(number), ctypes.c_ulong(flags | _SIGCHLD),
                       None, None, None, None)
    if pid == 0:
        api.PyOS_AfterFork_Child()
    else:
        api.PyOS_AfterFork_Parent()
    return pid


class Zygote:
    """The request loop. Single-threaded: every fork happens from this one thread.

    The zygote is started once per host process (`LocalSandbox`) or once per container
    (`DockerSandbox`), imports everything cells use (numpy, PIL, matplotlib with Agg, decord /
    PyAV when installed), then serves requests from the host on a Unix seqpacket socket, one JSON
    message each:

    - `{"op": "spawn"}` with two file descriptors attached (the host's socket to the new worker and
      the write end of a status pipe): makes a private working directory and forks the worker.
      Replies `{"ok": true, "id": <worker pid>, "workdir": <path>}`.
    - `{"op": "kill", "id": ...}`: SIGKILLs every process of that episode and replies at once.
      When the worker has exited, the zygote reaps it and removes its working directory (and
      anything its user id left in /tmp, /var/tmp or /dev/shm). Requests come first: the next
      episode is forked while the last one is still being torn down.

    The worker is cloned into new PID, network and IPC namespaces where the kernel allows it: it is
    init there, so its death takes every process of the episode with it, however they were started
    (where namespaces are refused, every process of the episode's user id is killed instead). When
    a worker ends, the zygote writes its exit status ("exit 7", "signal 11") to the status pipe: the
    host's sign that it is gone. The worker confines itself (see `worker.start_worker`).
    When the host's end of the socket closes, the zygote kills every episode and exits.
    """

    def __init__(self, control: socket.socket, tmp_root: str, uid_base: int) -> None:
        self.control = control
        self.tmp_root = tmp_root
        self.uid_base = uid_base
        self.episodes: dict[int, _Episode] = {}
        self.namespaces = True

    def serve(self) -> None:
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        while True:
            ready = select.select([self.control, wake_read], [], [])[0]
            if self.control in ready:
                if not self._answer():
                    break
                continue  # reaping waits while requests are queued
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
            self._reap()
        for pid in list(self.episodes):
            self._end(pid, kill=True)

    def _answer(self) -> bool:
        """Handle one request; False when the host has gone."""
        try:
            message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 4)
        except OSError:
            return False
        if not message:
            return False
        try:
            reply = self._handle(json.loads(message), fds)
        except Exception as exc:  # a bad request must not stop the zygote
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.control.send(json.dumps(reply).encode())
        return True

    def _handle(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        if message["op"] == "spawn":
            return self._spawn(*fds)
        if message["op"] == "kill":
            episode = self.episodes.get(int(message["id"]))
            if episode is not None:
                _kill(episode)
            return {"ok": True}
        raise ValueError(f"unknown request {message['op']!r}")

    def _spawn(self, worker_fd: int, status_fd: int) -> dict[str, Any]:
        """Clone a worker into new namespaces (fork without them where refused)."""
        workdir = tempfile.mkdtemp(prefix="pyvision-episode-", dir=self.tmp_root)
        pid = -1
        if self.namespaces:
            pid = _clone(confine.CLONE_NEWPID | confine.CLONE_NEWNET | confine.CLONE_NEWIPC)
            self.namespaces = pid >= 0  # refused once (no privileges): don't try every time
        namespaced = pid >= 0
        if pid < 0:
            pid = os.fork()
        if pid == 0:
            try:
                os.close(status_fd)
                self.control.close()
                from pyvision_env.sandbox.worker import start_worker

                start_worker(worker_fd, workdir, self.uid_base,
                             ["pid", "network"] if namespaced else [])
            finally:
                os._exit(0)
        os.close(worker_fd)
        self.episodes[pid] = _Episode(pid, self.uid_base + pid, workdir, status_fd, namespaced)
        return {"ok": True, "id": pid, "workdir": workdir}

    def _reap(self) -> None:
        """Collect workers that ended on their own; tell the host how, then clean up."""
        for pid in list(self.episodes):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self._end(pid, status=status)

    def _end(self, pid: int, *, kill: bool = False, status: int | None = None) -> None:
        """Make sure every process of the episode is gone, report its status, remove its files."""
        episode = self.episodes.pop(pid, None)
        if episode is None:
            return
        if kill:
            _kill(episode)
        elif not episode.namespaced:  # no PID namespace took the rest down with the worker
            confine.kill_user(episode.uid)
        if status is None:
            with contextlib.suppress(ChildProcessError):
                status = os.waitpid(pid, 0)[1]
        if status is not None:
            report = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                      else f"exit {os.waitstatus_to_exitcode(status)}")
            with contextlib.suppress(OSError):
                os.write(episode.status_fd, report.encode())
        os.close(episode.status_fd)
        self._clean_files(episode)

    @staticmethod
    def _clean_files(episode: _Episode) -> None:
        shutil.rmtree(episode.workdir, ignore_errors=True)
        for scratch in _SCRATCH_DIRS:
            with contextlib.suppress(OSError), os.scandir(scratch) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_uid != episode.uid:
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)


def _kill(episode: _Episode) -> None:
    """SIGKILL the worker and, without a PID namespace to do it, every process of its uid."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(episode.pid, signal.SIGKILL)
    if not episode.namespaced:
        confine.kill_user(episode.uid)


def main(argv: list[str]) -> None:
    """`--fd N` (a socket inherited from the host) or `--listen PATH` (accept one connection);
    `--tmp DIR`, where working directories go; `--uid-base N`, worker uids are N + their pid."""
    options = dict(zip(argv[::2], argv[1::2]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    optional = preload()
    if "--listen" in options:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
            listener.bind(options["--listen"])
            os.chmod(options["--listen"], 0o600)
            listener.listen(1)
            control, _ = listener.accept()
        os.unlink(options["--listen"])
    else:
        control = socket.socket(fileno=int(options["--fd"]))
    control.send(json.dumps({"ok": True, "pid": os.getpid(), "optional": optional,
                             "python": sys.version.split()[0]}).encode())
    Zygote(control, options.get("--tmp", tempfile.gettempdir()),
           int(options.get("--uid-base", confine.UID_BASE))).serve()


# Run as `python -c BOOTSTRAP ROOT ARGS...`: imports the sandbox modules from ROOT without running
# any package `__init__` (the host package pulls in gymnasium; the Docker image has none of it).
BOOTSTRAP = """\
import sys, types
root = sys.argv[1]
sys.path.insert(0, root)
for name in ("pyvision_env", "pyvision_env.sandbox", "pyvision_env.media"):
    package = types.ModuleType(name)
    package.__path__ = [root + "/" + name.replace(".", "/")]
    sys.modules[name] = package
from pyvision_env.sandbox.zygote import main
main(sys.argv[2:])
"""
