"""`LocalSandbox`, the default backend: workers forked from a pre-warmed zygote on this machine."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading

from pyvision_env.sandbox.base import SandboxConfig
from pyvision_env.sandbox.forked import ForkedSandbox, SandboxStartError, ZygoteClient
from pyvision_env.sandbox.zygote import BOOTSTRAP, PACKAGE_ROOT, ZYGOTE_ENV_SET

# What the zygote (and so every worker) may inherit from the host's environment.
ZYGOTE_ENV_KEEP = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TERM", "MPLCONFIGDIR",
                   "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
ZYGOTE_ENV_KEEP_PREFIXES = ("LC_",)

_zygote_lock = threading.Lock()
_zygote: ZygoteClient | None = None


def zygote_environment() -> dict[str, str]:
    """The environment the zygote starts with: an allowlist of the host's, plus thread caps."""
    kept = {key: value for key, value in os.environ.items()
            if key in ZYGOTE_ENV_KEEP or key.startswith(ZYGOTE_ENV_KEEP_PREFIXES)}
    return {**kept, **ZYGOTE_ENV_SET}


def local_zygote(timeout: float = 60.0) -> ZygoteClient:
    """This process's zygote, started on first use (and again if it died or we forked)."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or not _zygote.alive:
            if _zygote is None:
                atexit.register(_close_zygote)
            _zygote = _start_zygote(timeout)
        return _zygote


def _close_zygote() -> None:
    """At exit: disconnect, so the zygote ends its episodes and exits."""
    if _zygote is not None:
        _zygote.close()


def _start_zygote(timeout: float) -> ZygoteClient:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    command = [sys.executable, "-c", BOOTSTRAP, PACKAGE_ROOT, "--fd", str(theirs.fileno()),
               "--tmp", tempfile.gettempdir()]
    try:
        process = subprocess.Popen(command, env=zygote_environment(), pass_fds=[theirs.fileno()],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   start_new_session=True, cwd="/")
    except OSError as exc:
        ours.close()
        raise SandboxStartError(f"could not start the sandbox zygote: {exc}") from exc
    finally:
        theirs.close()
    try:
        client = ZygoteClient(ours, timeout)
    except SandboxStartError as exc:
        process.kill()
        ours.close()
        raise SandboxStartError(f"{exc}; exit code {process.poll()} (check that "
                                f"{sys.executable} can import numpy, PIL and matplotlib)") from None
    # Reap the zygote when it exits, so it never lingers as a zombie of the host.
    threading.Thread(target=process.wait, name="pyvision-zygote-reaper", daemon=True).start()
    return client


class LocalSandbox(ForkedSandbox):
    """Runs cells in a confined worker forked from this machine's zygote.

    Example:
        >>> import numpy as np
        >>> with LocalSandbox(SandboxConfig(cell_timeout=10)) as sandbox:
        ...     sandbox.start(images=[np.zeros((30, 40, 3), dtype=np.uint8)])
        ...     result = sandbox.run("print(image_clue_0.size)")
        >>> result.status.value, result.stdout
        ('ok', '(40, 30)\\n')

    The zygote (`zygote.py`) is one process per host process, started on first use with a clean
    environment (an allowlist: no tokens or keys to inherit, and nothing in its /proc/<pid>/environ)
    and with numpy, PIL, matplotlib and the video decoders already imported. Each episode's worker
    is forked from it in milliseconds into new PID, network and IPC namespaces, and then confines
    itself: a filesystem view of its own (only the interpreter, the libraries, its media and its
    working directory; see `view.py`), its own uid, rlimits, Landlock, seccomp. See
    docs/sandbox.md for the threat model and what holds where.

    The zygote lives until the host process exits (it sees its control socket close), or until the
    host forks: a forked child starts a zygote of its own on first use.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        super().__init__(config)

    def _acquire_zygote(self) -> ZygoteClient:
        return local_zygote(self.config.start_timeout)


__all__ = ["LocalSandbox", "SandboxStartError", "local_zygote", "zygote_environment"]
