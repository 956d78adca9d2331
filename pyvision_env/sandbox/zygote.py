"""The zygote: a pre-warmed process with a clean environment that forks a worker per episode."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import select
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from pyvision_env.sandbox import confine, view

# The directory holding the `pyvision_env` package: the zygote's code comes from here.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Set in the zygote's environment by every backend: thread caps, and transparent huge pages for
# malloc (a fresh worker copies the episode's images into new memory, and with 4 KiB pages the
# page faults cost more than the copy).
ZYGOTE_ENV_SET = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
                  "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}

PRELOAD = ("numpy", "PIL.Image", "matplotlib", "matplotlib.pyplot", "matplotlib.figure",
           "matplotlib.backends.backend_agg", "pyvision_env.sandbox.worker")
OPTIONAL_PRELOAD = ("decord", "av")
MAX_MESSAGE = 64 * 1024
_SIGCHLD = 17
_CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220}
_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_PR_SET_CHILD_SUBREAPER = 36


@dataclass
class _Episode:
    pid: int
    uid: int
    workdir: str
    status_fd: int
    init: int | None  # the host pid of its namespaces' init; None without namespaces

    @property
    def namespaced(self) -> bool:
        return self.init is not None


@dataclass
class _Ahead:
    """A worker forked before its episode: in its namespaces and view, holding no episode data,
    waiting on `link` for the host's socket (see `Zygote._fork_ahead`)."""

    pid: int
    uid: int
    workdir: str
    init: int | None
    link: socket.socket


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
    PyAV when installed), then serves requests from the host on a Unix seqpacket socket, one
    JSON message each:

    - `{"op": "spawn", "videos": bool}` with two file descriptors attached (the host's socket to
      the new worker and the write end of a status pipe): hands the host the worker forked ahead
      (or, when there is none or the episode binds video files into its view, makes a private
      working directory and forks one). Replies `{"ok": true, "id": <worker pid>, "workdir":
      <path>}`, then forks the next worker ahead.
    - `{"op": "kill", "id": ...}`: SIGKILLs every process of that episode and replies at once.

    When a worker ends, the zygote reaps it, writes its exit status ("exit 7", "signal 11") to the
    status pipe (the host's sign that it is gone) and hands its files to the cleaner, a process of
    its own: removing a cell's leftovers (a 1,500-deep tree, 50,000 files) never recurses and never
    delays a request. The zygote reaps every child, including processes an episode orphaned (it is
    their subreaper, or init in a container). Its workers and the cleaner die with it
    (`PR_SET_PDEATHSIG`), and when the host's end of the socket closes it kills every episode,
    lets the cleaner finish and exits.

    One worker is kept forked ahead of demand (`_fork_ahead`): it has entered its namespaces and
    its filesystem view, with an empty working directory of its own, and waits for the host's
    socket; everything of the episode (media, limits) reaches it only after that, so a worker
    made ahead holds nothing of any episode, and the next is forked only once it is handed out.

    The worker is forked into new PID, network and IPC namespaces where the kernel allows it
    (their init comes from `_InitFactory`); killing the init at the episode's end takes every
    process of the episode with it, however they were started (where namespaces are refused,
    every process of the episode's user id is killed instead). The worker confines itself (see
    `worker.start_worker`).
    """

    def __init__(self, control: socket.socket, tmp_root: str, uid_base: int,
                 inits: _InitFactory) -> None:
        self.control = control
        self.tmp_root = tmp_root
        self.uid_base = uid_base
        self.episodes: dict[int, _Episode] = {}
        self.namespaces = True
        self.cleaner = _Cleaner()
        self.inits = inits
        self.ahead: _Ahead | None = None

    def serve(self) -> None:
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.cleaner.start()
        self._fork_ahead()
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
        self._discard_ahead()
        self.cleaner.finish()
        self.inits.stop()

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
        if self.ahead is None:
            self._fork_ahead()  # after the reply: the host goes on while this one is made
        return True

    def _handle(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        if message["op"] == "spawn":
            return self._spawn(*fds, videos=bool(message.get("videos")))
        if message["op"] == "kill":
            episode = self.episodes.get(int(message["id"]))
            if episode is not None:
                _kill(episode)
            return {"ok": True}
        raise ValueError(f"unknown request {message['op']!r}")

    def _spawn(self, worker_fd: int, status_fd: int, *, videos: bool) -> dict[str, Any]:
        """Hand the host a worker: the one forked ahead, or a new one (video files are bound into
        a worker's view as it enters it, so an episode with videos gets a new one and the one
        made ahead waits for the next episode)."""
        ahead = None if videos else self.ahead
        if ahead is not None:
            self.ahead = None
            try:
                socket.send_fds(ahead.link, [b"go"], [worker_fd])
            except OSError:  # it died waiting: fork one now
                self._discard(ahead)
                ahead = None
        if ahead is None:
            pid, workdir, init = self._fork_worker(worker_fd, ahead=False)
        else:
            ahead.link.close()
            pid, workdir, init = ahead.pid, ahead.workdir, ahead.init
        os.close(worker_fd)
        self.episodes[pid] = _Episode(pid, self.uid_base + pid, workdir, status_fd, init)
        return {"ok": True, "id": pid, "workdir": workdir}

    def _fork_ahead(self) -> None:
        """Fork the next worker before it is asked for; it waits for the host's socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid, workdir, init = self._fork_worker(theirs.fileno(), ahead=True)
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        self.ahead = _Ahead(pid, self.uid_base + pid, workdir, init, ours)

    def _discard(self, ahead: _Ahead) -> None:
        """End a worker forked ahead (never used, or not usable) and remove its files."""
        ahead.link.close()
        _kill(_Episode(ahead.pid, ahead.uid, ahead.workdir, -1, ahead.init))
        with contextlib.suppress(ChildProcessError):
            os.waitpid(ahead.pid, 0)
        self.cleaner.clean(ahead.workdir, ahead.uid)

    def _discard_ahead(self) -> None:
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            self._discard(ahead)

    def _fork_worker(self, worker_fd: int, *, ahead: bool) -> tuple[int, str, int | None]:
        """Fork a worker into an episode's fresh namespaces (without them where refused), with
        a new working directory; returns (pid, working directory, host pid of its init)."""
        workdir = tempfile.mkdtemp(prefix="pyvision-episode-", dir=self.tmp_root)
        init = self.inits.new_init() if self.namespaces else None
        self.namespaces = init is not None  # refused once (no privileges): don't try every time
        if init is not None:
            _setns(f"/proc/{init}/ns/pid", confine.CLONE_NEWPID)  # for our next child only
        pid = -1
        try:
            pid = os.fork()
        finally:
            if init is not None and pid != 0:
                _setns("/proc/self/ns/pid", confine.CLONE_NEWPID)
        if pid == 0:
            try:
                self.control.close()  # every other inherited descriptor: `worker._detach`
                from pyvision_env.sandbox.worker import start_worker

                if init is not None:
                    _setns(f"/proc/{init}/ns/net", confine.CLONE_NEWNET)
                    _setns(f"/proc/{init}/ns/ipc", confine.CLONE_NEWIPC)
                start_worker(worker_fd, workdir, self.uid_base + pid_outside(),
                             self.inits.template if init is not None else None,
                             ["pid", "network"] if init is not None else [], ahead=ahead)
            finally:
                os._exit(0)
        return pid, workdir, init

    def _reap(self) -> None:
        """Collect every child that ended: workers (report, clean up) and orphans of episodes."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.episodes:
                self._end(pid, status=status)
            elif self.ahead is not None and pid == self.ahead.pid:  # died waiting: next spawn forks
                ahead, self.ahead = self.ahead, None
                ahead.link.close()
                _kill_rest(_Episode(ahead.pid, ahead.uid, ahead.workdir, -1, ahead.init))
                self.cleaner.clean(ahead.workdir, ahead.uid)
            elif pid == self.cleaner.pid:
                self.cleaner.start()  # it died (killed from outside): start another
            elif pid == self.inits.pid:
                self.inits.start()

    def _end(self, pid: int, *, kill: bool = False, status: int | None = None) -> None:
        """Make sure every process of the episode is gone, report its status, hand off its files."""
        episode = self.episodes.pop(pid, None)
        if episode is None:
            return
        if kill:
            _kill(episode)
        else:  # the worker is gone: take down the rest of its namespace (or of its uid)
            _kill_rest(episode)
        if status is None:
            with contextlib.suppress(ChildProcessError):
                status = os.waitpid(pid, 0)[1]
        if status is not None:
            code = os.waitstatus_to_exitcode(status)
            report = f"signal {-code}" if code < 0 else f"exit {code}"
            with contextlib.suppress(OSError):
                os.write(episode.status_fd, report.encode())
        os.close(episode.status_fd)
        self.cleaner.clean(episode.workdir, episode.uid)


class _Cleaner:
    """A child process that removes ended episodes' files, so the zygote never waits for it."""

    def __init__(self) -> None:
        self.pid = -1
        self._pipe = -1

    def start(self) -> None:
        if self._pipe >= 0:
            os.close(self._pipe)
        read_end, self._pipe = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(self._pipe)
                confine.die_with_parent()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                with os.fdopen(read_end, "rb") as requests:
                    for line in requests:
                        with contextlib.suppress(Exception):
                            _clean_episode(json.loads(line))
            finally:
                os._exit(0)
        os.close(read_end)

    def clean(self, workdir: str, uid: int) -> None:
        request = {"workdir": workdir, "uid": uid}
        try:
            os.write(self._pipe, json.dumps(request).encode() + b"\n")
        except OSError:  # the cleaner is gone: start another and clean here as a last resort
            self.start()
            _clean_episode(request)

    def finish(self, seconds: float = 30.0) -> None:
        """Let the cleaner work through what it was given, then exit."""
        os.close(self._pipe)
        self._pipe = -1
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            time.sleep(0.01)


def _clean_episode(request: dict[str, Any]) -> None:
    """Remove an episode's working directory and what its uid left in the scratch directories."""
    remove_tree(request["workdir"])
    for scratch in _SCRATCH_DIRS:
        with contextlib.suppress(OSError), os.scandir(scratch) as entries:
            for entry in list(entries):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == request["uid"]:
                        remove_tree(entry.path)


def remove_tree(path: str) -> None:
    """Remove `path` and everything beneath it, never following a symlink, without recursion.

    Subdirectories are moved up into the top directory one level at a time and removed once
    empty, so a tree of any depth costs two open descriptors and no long paths.
    """
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError:  # not a directory, or a symlink
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    serial = 0
    try:
        while True:
            removed = 0
            with os.scandir(top) as entries:
                names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
            if not names:
                break
            for name, is_dir in names:
                if not is_dir:
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=top)
                        removed += 1
                    continue
                try:
                    inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
                except OSError:
                    continue
                try:
                    with os.scandir(inner) as entries:
                        children = [(entry.name, entry.is_dir(follow_symlinks=False))
                                    for entry in entries]
                    for child, child_is_dir in children:
                        with contextlib.suppress(OSError):
                            if child_is_dir:
                                serial += 1
                                os.rename(child, f".pyvision-removing-{serial}", src_dir_fd=inner,
                                          dst_dir_fd=top)
                            else:
                                os.unlink(child, dir_fd=inner)
                            removed += 1
                finally:
                    os.close(inner)
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=top)
                    removed += 1
            if not removed:  # something cannot be removed (e.g. immutable): stop trying
                break
    finally:
        os.close(top)
    with contextlib.suppress(OSError):
        os.rmdir(path)


class _InitFactory:
    """A small process that makes each episode's namespaces: it clones an init into new PID,
    network and IPC namespaces per request, and the zygote forks the worker into them.

    It is forked before the zygote imports numpy and matplotlib, so cloning it is cheap, and it
    keeps one init made ahead, so a spawn does not wait for it. It also holds the mount
    namespace with the shared part of the workers' filesystem view (`view.build_template`). An
    init reaps every process of its episode (orphans included, so a cell's double-forked
    children never pile up as zombies) until the zygote kills it when the worker ends, which
    ends the namespace and everything in it.
    """

    def __init__(self, tmp_root: str) -> None:
        self.tmp_root = tmp_root
        self.pid = -1
        self.template: view.Template | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Fork the factory; it builds the shared part of the workers' view (`view.Template`)."""
        if self._sock is not None:
            self._sock.close()
        plan = view.plan_view(PACKAGE_ROOT, self.tmp_root)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                ours.close()
                _serve_inits(theirs, plan, self.tmp_root)
            finally:
                os._exit(0)
        theirs.close()
        self._sock = ours
        built = json.loads(ours.recv(MAX_MESSAGE))
        self.template = view.Template(**built) if built else None
        ours.send(b"init")  # asked one ahead: a spawn finds its answer waiting

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self.template is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.template.root)

    def new_init(self) -> int | None:
        """The host pid of a new init in fresh namespaces, or None where they are refused."""
        try:
            assert self._sock is not None
            pid = int(self._sock.recv(64))
            self._sock.send(b"init")  # the next one
        except (OSError, ValueError, AssertionError):
            self.start()
            return None
        return pid if pid > 0 else None


def _serve_inits(sock: socket.socket, plan: view.ViewPlan, tmp_root: str) -> None:
    confine.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the inits it made are reaped by the kernel
    try:
        template = view.build_template(plan, tmp_root)
    except OSError:
        template = None
    sock.send(json.dumps(None if template is None else asdict(template)).encode())
    ready = _make_init(sock)  # one made ahead, so a request costs no clone
    while sock.recv(16):
        sock.send(str(ready).encode())
        ready = _make_init(sock)


def _make_init(sock: socket.socket) -> int:
    pid = _clone(confine.CLONE_NEWPID | confine.CLONE_NEWNET | confine.CLONE_NEWIPC)
    if pid == 0:
        sock.close()
        _namespace_init()
    return pid


def _namespace_init() -> None:
    """Init of an episode's PID namespace: reap whatever ends in it, until killed."""
    try:
        confine.die_with_parent()
        os.closerange(0, 1 << 16)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        while True:
            signal.sigwait({signal.SIGCHLD})
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
    finally:
        os._exit(0)


def _setns(path: str, kind: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, kind) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def pid_outside() -> int:
    """This process's pid as the host sees it (whatever PID namespace it is in)."""
    return int(os.readlink("/proc/self"))


def _kill(episode: _Episode) -> None:
    """SIGKILL the worker and everything else of its episode."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(episode.pid, signal.SIGKILL)
    _kill_rest(episode)


def _kill_rest(episode: _Episode) -> None:
    """SIGKILL the init of the episode's namespaces (the kernel then kills every process in
    them) or, without namespaces, every process of its uid."""
    if episode.init is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(episode.init, signal.SIGKILL)
    else:
        confine.kill_user(episode.uid)


def main(argv: list[str]) -> None:
    """`--fd N` (a socket inherited from the host) or `--listen PATH` (accept one connection);
    `--tmp DIR`, where working directories go (in a directory of this zygote's); `--uid-base N`,
    worker uids are N + their pid."""
    options = dict(zip(argv[::2], argv[1::2]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    # Episodes' working directories go into one directory of this zygote's (the only part of
    # the temp dir a worker's view shows, its own working directory within).
    episodes = tempfile.mkdtemp(prefix="pyvision-episodes-",
                                dir=options.get("--tmp", tempfile.gettempdir()))
    os.chmod(episodes, 0o711)
    inits = _InitFactory(episodes)
    inits.start()  # before the heavy imports, so it stays small
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
    try:
        Zygote(control, episodes, int(options.get("--uid-base", confine.UID_BASE)), inits).serve()
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(episodes)


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
