"""A seccomp filter for workers: no kernel keyrings, no user namespaces, no foreign syscall ABIs.

Kernel keyrings outlive processes (a user's keyring stays with the uid, and worker uids are
reused as pids are), so `add_key`, `request_key` and `keyctl` fail with EPERM: no data can pass
from one episode to a later one through them. `unshare` and `clone` with `CLONE_NEWUSER` fail
too (a user namespace opens mounts and netfilter to the code), `clone3` reports ENOSYS (so the
C library falls back to `clone`, whose flags the filter can read), and so does every syscall of
another ABI (x32, i386 via `int 0x80`), which could otherwise reach the same calls under other
numbers. `memfd_create` fails too: memory written into a memfd is counted by no rlimit.
Everything else is allowed: limits come from rlimits, Landlock and the uid.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

_SYSCALLS = {  # machine -> (audit arch, {name: number})
    "x86_64": (0xC000003E, {"add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
                            "clone": 56, "clone3": 435, "memfd_create": 319}),
    "aarch64": (0xC00000B7, {"add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97,
                             "clone": 220, "clone3": 435, "memfd_create": 279}),
}
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16  # struct seccomp_data (arg0's low half)
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def _op(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter as BPF instructions for this machine; None where we have no syscall table."""
    machine = machine or os.uname().machine
    table = _SYSCALLS.get(machine)
    if table is None:
        return None
    arch, number = table
    deny, nosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    ops = [_op(_LD_W_ABS, _OFFSET_ARCH), _op(_JEQ, arch, 1, 0), _op(_RET, nosys),
           _op(_LD_W_ABS, _OFFSET_NR)]
    if machine == "x86_64":
        ops += [_op(_JGE, _X32_BIT, 0, 1), _op(_RET, nosys)]
    for name in ("add_key", "request_key", "keyctl", "memfd_create"):
        ops += [_op(_JEQ, number[name], 0, 1), _op(_RET, deny)]
    ops += [_op(_JEQ, number["clone3"], 0, 1), _op(_RET, nosys)]
    ops += [_op(_JEQ, number["unshare"], 1, 0), _op(_JEQ, number["clone"], 0, 3),
            _op(_LD_W_ABS, _OFFSET_ARG0), _op(_JSET, _CLONE_NEWUSER, 0, 1), _op(_RET, deny),
            _op(_RET, _RET_ALLOW)]
    return b"".join(ops)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter() -> bool:
    """Install the filter on this process (and everything it starts); needs no_new_privs first.
    False where the kernel or machine does not allow it."""
    code = program()
    if code is None:
        return False
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
    except (OSError, AttributeError):
        return False
