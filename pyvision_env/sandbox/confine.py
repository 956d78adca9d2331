"""Kernel-level confinement of a worker: namespaces, rlimits, its own uid, Landlock."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from typing import Any

CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38

# Each worker runs as UID_BASE + (its pid outside any namespace): a user of its own, so
# RLIMIT_NPROC counts only its processes and file permissions separate episodes. No /etc/passwd
# entry is needed.
UID_BASE = 1_000_000

_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def unshare(flags: int) -> bool:
    """`unshare(2)`; False when the kernel or our privileges do not allow it."""
    try:
        return _lib().unshare(ctypes.c_int(flags)) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent() -> None:
    """SIGKILL this process when its parent exits."""
    try:
        _lib().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def apply_limits(*, cpu_seconds: float, memory_bytes: int, max_processes: int,
                 max_file_bytes: int, max_open_files: int) -> list[str]:
    """Set hard and soft rlimits (no core files). Returns the names that applied."""
    cpu = max(1, int(round(cpu_seconds)))
    wanted = {
        "cpu": (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU at the soft limit, then SIGKILL
        "memory": (resource.RLIMIT_AS, memory_bytes, memory_bytes),
        "processes": (resource.RLIMIT_NPROC, max_processes, max_processes),
        "file_size": (resource.RLIMIT_FSIZE, max_file_bytes, max_file_bytes),
        "open_files": (resource.RLIMIT_NOFILE, max_open_files, max_open_files),
        "core": (resource.RLIMIT_CORE, 0, 0),
    }
    applied = []
    for name, (which, soft, hard) in wanted.items():
        try:
            resource.setrlimit(which, (soft, hard))
            applied.append(name)
        except (ValueError, OSError):
            pass
    return applied


def drop_privileges(uid: int) -> bool:
    """Become `uid` (and gid `uid`, no supplementary groups) for good, if we are root."""
    if os.geteuid() != 0:
        return False
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError:
        return False
    # A uid change makes the process non-dumpable, which hides /proc/self/fd and friends from
    # the cell itself; only processes of this same throwaway uid could use what it re-enables.
    _lib().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    return True


def no_new_privileges() -> bool:
    """No setuid binaries or file capabilities can raise privileges from here on."""
    return _lib().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0


def kill_user(uid: int) -> None:
    """SIGKILL every process running as `uid` (for hosts without PID namespaces)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# Landlock: writes only beneath the working directory, no TCP, no signals or abstract sockets
# outside the sandbox (each part as far as the kernel's Landlock ABI allows)
# ---------------------------------------------------------------------------------------------

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS_WRITE_FILE = 1 << 1
_FS_WRITES_V1 = _FS_WRITE_FILE | sum(1 << bit for bit in range(4, 13))  # remove_*, make_*
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2  # ABI 6


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is missing or blocked."""
    try:
        version = _lib().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                                 ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(0, version)


def restrict_with_landlock(writable: list[str]) -> list[str]:
    """Allow writes only beneath `writable` paths; block TCP, outside signals and abstract sockets.

    Needs `no_new_privileges()` first (or CAP_SYS_ADMIN). Returns what applied: "writes",
    "tcp", "signals" — empty when the kernel has no Landlock.
    """
    abi = landlock_abi()
    if abi < 1:
        return []
    writes = _FS_WRITES_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled_access_fs=writes)
    size = 8
    if abi >= 4:
        attr.handled_access_net, size = _NET_BIND_TCP | _NET_CONNECT_TCP, 16
    if abi >= 6:
        attr.scoped, size = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL, 24
    libc = _lib()
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        return []
    try:
        for path in writable:
            access = writes if os.path.isdir(path) else _FS_WRITE_FILE | (writes & _FS_TRUNCATE)
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule),
                                ctypes.c_uint32(0)) != 0:
                    return []
            finally:
                os.close(fd)
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            return []
    finally:
        os.close(ruleset)
    return ["writes"] + (["tcp"] if abi >= 4 else []) + (["signals"] if abi >= 6 else [])
