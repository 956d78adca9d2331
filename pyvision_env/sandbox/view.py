"""The worker's filesystem view: a mount namespace holding only what a cell may see.

Where mount namespaces are allowed (root, as in CI and training containers), a new root on an
empty tmpfs holds, read-only and at their own paths:

- the system's programs and libraries (`/usr`, `/bin`, `/lib*`, a few files of `/etc`),
- the interpreter: its prefixes and every directory on the zygote's `sys.path`, so the cell may
  import what is installed; the project's own packages (`pyvision_env`, `pyvision_agents`,
  `pyvision_train`) are covered by empty directories wherever they sit,
- the episode's videos under neutral names (`/media/video_0.mp4`, ...),

plus a minimal `/dev` and a small `/dev/shm`; this much is built once per zygote
(`build_template`). Each worker copies it and adds its working directory (read-write), its
videos and a fresh `/proc` of its own PID namespace, then `pivot_root`s into it and covers the
host's tree (left at `/.host`) with an empty read-only tmpfs (`enter_view`). Nothing else of
the host exists for the cell: no dataset files, caches, other episodes' directories, the
project's source or other processes' command lines.

Directories above a bound path are created in the tmpfs with mode 0755, so an interpreter or
venv under a 0700 home (`/root/.pyenv`, a conda install in a private home) stays readable by
the worker's own uid: the view needs no access to the home itself.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000

PROJECT_PACKAGES = ("pyvision_env", "pyvision_agents", "pyvision_train")
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf",
             "passwd", "group", "fonts", "mime.types", "matplotlibrc")
DEVICES = ("null", "zero", "full", "random", "urandom")
MEDIA_DIR = "/media"
SHM_BYTES = 64 * 1024 * 1024

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
_MNT_DETACH = 2
_OLD_ROOT = "/.host"  # where the host's tree hangs, covered
_PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41}

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class ViewPlan:
    """What goes into every worker's view; computed once in the zygote (`plan_view`).

    Attributes:
        readable: host paths bound read-only at the same path (directories or files), outermost
            first; a path beneath an earlier one is left out (the earlier bind shows it).
        hidden: directories beneath `readable` paths covered by an empty read-only directory.
    """

    readable: tuple[str, ...]
    hidden: tuple[str, ...]


def plan_view(package_root: str, tmp_root: str) -> ViewPlan:
    """The view for this interpreter: system paths, its prefixes and `sys.path`, minus the project.

    `package_root` is the directory holding this project's packages (a source checkout); it is
    never bound, and any project package found inside a bound directory is hidden. No path that
    holds `package_root` or `tmp_root` (where episodes' directories are) is bound, nor `/`.
    """
    root = os.path.realpath(package_root)
    tmp = os.path.realpath(tmp_root)
    wanted = [*SYSTEM_PATHS, *(os.path.join("/etc", name) for name in ETC_FILES),
              sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(sys.executable), *sys.path]
    readable: list[str] = []
    present = {os.path.abspath(path) for path in wanted if path and os.path.lexists(path)}
    for path in sorted(present):
        real = os.path.realpath(path)
        if _beneath(root, real) or _beneath(tmp, real):  # `/`, the checkout, the temp dir
            continue
        if not any(_beneath(path, outer) for outer in readable):
            readable.append(path)
    candidates = [os.path.join(directory, name) for directory in [*sys.path, root]
                  if directory for name in PROJECT_PACKAGES]
    candidates.append(root)
    bound = [outer for outer in readable if not os.path.islink(outer)]
    hidden = sorted({os.path.abspath(path) for path in candidates if os.path.isdir(path)
                     and any(_beneath(path, outer) for outer in bound)})
    return ViewPlan(tuple(readable), tuple(hidden))


@dataclass(frozen=True)
class Template:
    """A view built once, in a mount namespace a helper process holds (`build_template`).

    Attributes:
        namespace: `/proc/<pid>/ns/mnt` of the process holding it.
        root: where the view's tmpfs is mounted in that namespace.
        tmp_root: the directory of episodes' working directories (covered per worker).
    """

    namespace: str
    root: str
    tmp_root: str


def build_template(plan: ViewPlan, tmp_root: str) -> Template | None:
    """Build the part of the view every episode shares, in a new mount namespace of this process.

    Called once, in the small helper that makes episodes' namespaces: a worker then copies it
    (`enter_view`) instead of making some forty mounts of its own. Returns None, changing
    nothing, where the kernel or our privileges refuse a mount namespace.
    """
    if _libc.unshare(ctypes.c_int(CLONE_NEWNS)) != 0:
        return None
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    root = os.path.join(tmp_root, f"pyvision-view-{os.getpid()}")
    os.makedirs(root, 0o700, exist_ok=True)
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755,size=4m")
    for path in plan.readable:
        _place(root, path, path, read_only=True)
    for path in plan.hidden:
        _mount("tmpfs", root + path, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
               "mode=555,size=4k")
    _make_dev(root)
    for path in ("/proc", "/tmp", MEDIA_DIR, tmp_root, _OLD_ROOT):
        os.makedirs(root + path, 0o755, exist_ok=True)
    return Template(f"/proc/{os.getpid()}/ns/mnt", root, tmp_root)


def enter_view(template: Template, workdir: str, media: dict[str, str], new_proc: bool) -> None:
    """Move this process into its own copy of `template`, plus `workdir` and `media`.

    Args:
        template: the shared part (`build_template`).
        workdir: the episode's working directory (beneath `template.tmp_root`), bound
            read-write at its own path.
        media: path in the view (under `/media`) -> host file, each bound read-only.
        new_proc: mount a fresh `/proc` (true when this process is in a new PID namespace;
            otherwise the view has no `/proc`).

    The host's tree ends up at `/.host`, covered by an empty read-only tmpfs: unreachable
    without CAP_SYS_ADMIN (a detaching umount would cost an RCU grace period on every start).

    Raises:
        OSError: the view could not be built (the caller must not run cells then).
    """
    _setns(template.namespace)
    if _libc.unshare(ctypes.c_int(CLONE_NEWNS)) != 0:
        _raise("unshare mount namespace")
    root = template.root
    _mount("tmpfs", root + template.tmp_root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755,size=64k")
    _place(root, workdir, workdir, read_only=False)
    if media:
        _mount("tmpfs", root + MEDIA_DIR, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755,size=64k")
        for target, source in media.items():
            _place(root, source, target, read_only=True)
    if new_proc:
        _mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    _pivot_root(root)
    _mount("tmpfs", _OLD_ROOT, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "mode=000,size=4k")
    _mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir(workdir)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNS) != 0:
            _raise(f"setns {path}")
    finally:
        os.close(fd)


def _place(new_root: str, source: str, target: str, *, read_only: bool) -> None:
    """Bind `source` at `target` inside `new_root` (a symlink is recreated instead)."""
    inside = new_root + target
    os.makedirs(os.path.dirname(inside), 0o755, exist_ok=True)
    if os.path.islink(source) and source == target:
        if not os.path.lexists(inside):
            os.symlink(os.readlink(source), inside)
        return
    if os.path.isdir(source):
        os.makedirs(inside, 0o755, exist_ok=True)
    elif not os.path.lexists(inside):
        os.close(os.open(inside, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(source, inside, None, _MS_BIND | _MS_REC)
    flags = _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV | (_MS_RDONLY if read_only else 0)
    _mount(None, inside, None, flags)


def _make_dev(new_root: str) -> None:
    os.makedirs(new_root + "/dev", 0o755, exist_ok=True)
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            _place(new_root, "/dev/" + name, "/dev/" + name, read_only=False)
    os.makedirs(new_root + "/dev/shm", 0o755)
    _mount("tmpfs", new_root + "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
           f"mode=1777,size={SHM_BYTES}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new_root}/dev/{name}")


def _pivot_root(new_root: str) -> None:
    """Make `new_root` the root; the old one moves to `_OLD_ROOT`."""
    number = _PIVOT_ROOT_SYSCALL.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unsupported machine {os.uname().machine}")
    os.chdir(new_root)
    if _libc.syscall(ctypes.c_long(number), b".", _OLD_ROOT[1:].encode()) != 0:
        _raise("pivot_root")
    os.chdir("/")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    encode = (lambda text: None if text is None else text.encode())
    if _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags),
                   encode(data)) != 0:
        _raise(f"mount {target}")


def _raise(what: str) -> None:
    errno = ctypes.get_errno()
    raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _beneath(path: str, outer: str) -> bool:
    return path == outer or path.startswith(outer.rstrip("/") + "/")
