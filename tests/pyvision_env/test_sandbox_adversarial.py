"""Hostile cells against every sandbox backend: each must be contained.

Contained means: the sandbox returns a result (never raises, never hangs past its limit), the
next cell or episode works, no process of the episode is left once it is closed, and nothing
outside the working directory changes.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from pyvision_env.sandbox import CellStatus, SandboxConfig, make_sandbox

CONFIG = SandboxConfig(cell_timeout=3.0, memory_bytes=1024 * 1024 * 1024, max_processes=32,
                       max_file_bytes=8 * 1024 * 1024, cpu_seconds=20)
CANARY_DIR = "/var/tmp/pyvision-adversarial-canary"
# Cells that break their own interpreter on purpose: the rest of *their* episode may fail.
SELF_SABOTAGE = {"replace-builtins"}


def _listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.05)
    return server, server.getsockname()[1]


# (id, code, statuses it may end with). Run in a fresh episode each; then a plain cell must work.
HOSTILE = [
    ("infinite-loop", "while True:\n    pass", {CellStatus.TIMEOUT}),
    ("busy-thread-outlives-cell",
     "import threading\nthreading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True)"
     ".start()\nprint('started')", {CellStatus.OK}),
    ("fork-bomb", "import os\nwhile True:\n    os.fork()",
     {CellStatus.ERROR, CellStatus.TIMEOUT}),
    ("thread-bomb", "import threading, time\nwhile True:\n"
     "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()",
     {CellStatus.ERROR, CellStatus.TIMEOUT}),
    # Touched memory: stopped by the memory limit, or by the time limit where first-touch page
    # faults are slow (a VM that hands freed memory back to its host: up to ~0.5 s per 64 MiB).
    ("memory-bomb", "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))",
     {CellStatus.ERROR, CellStatus.TIMEOUT}),
    # Untouched memory (calloc'd zero pages) costs no faults: only the memory limit can stop it.
    ("address-space-bomb", "chunks = []\nwhile True:\n    chunks.append(bytes(64 * 1024 * 1024))",
     {CellStatus.ERROR}),
    ("huge-allocation", "x = bytearray(10 ** 12)", {CellStatus.ERROR}),
    ("print-1gb", "chunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    print(chunk)",
     {CellStatus.OK, CellStatus.TIMEOUT}),
    ("deep-recursion", "import sys\nsys.setrecursionlimit(10 ** 7)\n"
     "def f(n):\n    return f(n + 1)\nf(0)", {CellStatus.ERROR, CellStatus.TIMEOUT}),
    ("segfault-ctypes", "import ctypes\nctypes.string_at(0)", {CellStatus.ERROR}),
    ("os-exit", "import os\nos._exit(3)", {CellStatus.ERROR}),
    ("sys-exit", "import sys\nsys.exit(1)", {CellStatus.ERROR}),
    ("kill-parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
     "os.kill(1, signal.SIGKILL)", {CellStatus.OK, CellStatus.ERROR}),
    ("kill-everything", "import os, signal\nos.kill(-1, signal.SIGKILL)",
     {CellStatus.OK, CellStatus.ERROR}),
    ("close-stdout", "import sys, os\nsys.stdout.close()\nos.close(1)\nos.close(2)",
     {CellStatus.OK, CellStatus.ERROR}),
    ("redirect-stdout", "import sys, io\nsys.stdout = io.StringIO()\nsys.stderr = None",
     {CellStatus.OK}),
    ("replace-builtins", "import builtins\nbuiltins.print = None\nbuiltins.__import__ = None\n"
     "builtins.exec = None", {CellStatus.OK}),
    ("replace-plt-show", "plt.show = lambda *a, **k: None\ndisplay = None", {CellStatus.OK}),
    ("write-outside-workdir",
     f"import os\nfor path in ['/etc/pyvision-pwned', '/tmp/pyvision-pwned', '{CANARY_DIR}/x',"
     " '/root/pyvision-pwned', '/dev/shm/pyvision-pwned']:\n    try:\n"
     "        open(path, 'w').write('pwned')\n    except OSError as exc:\n        print(exc)",
     {CellStatus.OK}),
    ("read-host-secrets",
     "import os\nfor path in ['/proc/1/environ', f'/proc/{os.getppid()}/environ',"
     " '/root/.bashrc', '/proc/self/environ']:\n    try:\n        data = open(path, 'rb').read()\n"
     "        assert b'PYVISION_TEST_SECRET' not in data, path\n    except OSError:\n        pass",
     {CellStatus.OK}),
    ("parent-memory", "import os\nopen(f'/proc/{os.getppid()}/mem', 'rb').read(1)",
     {CellStatus.ERROR}),
    ("socket-internet", "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)",
     {CellStatus.ERROR}),
    ("socket-localhost", "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1)",
     {CellStatus.ERROR}),
    ("dns-lookup", "import socket\nsocket.getaddrinfo('example.com', 80)", {CellStatus.ERROR}),
    ("child-sleeps-forever", "import subprocess\nsubprocess.Popen(['sleep', '1000'], "
     "start_new_session=True)\nprint('spawned')", {CellStatus.OK}),
    ("double-fork-daemon", "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
     "    if os.fork() == 0:\n        time.sleep(1000)\n    os._exit(0)\nos.wait()",
     {CellStatus.OK}),
    ("figure-30000x30000", "plt.figure(figsize=(300, 300), dpi=100)\nplt.show()", {CellStatus.OK}),
    ("ignores-sigterm-never-returns", "import signal, time\n"
     "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
     "while True:\n    time.sleep(0.01)", {CellStatus.TIMEOUT}),
    ("huge-file", "with open('big', 'wb') as f:\n    f.write(b'0' * (64 * 1024 * 1024))",
     {CellStatus.ERROR}),
    ("many-open-files", "files = [open('f%d' % i, 'w') for i in range(100000)]",
     {CellStatus.ERROR}),
    ("corrupt-result-channel", "import os\nfor fd in range(3, 64):\n    try:\n"
     "        os.write(fd, b'\\xff' * 64)\n    except OSError:\n        pass",
     {CellStatus.OK, CellStatus.ERROR}),
    ("setuid-root", "import os\nos.setuid(0)", {CellStatus.ERROR}),
    ("new-network-namespace", "import ctypes\nassert ctypes.CDLL(None).unshare(0x40000000) != 0",
     {CellStatus.OK}),
]


def _uid_processes(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
                if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] != "Z":
                    found.append(int(entry))
            except (OSError, KeyError, ValueError):
                pass
    return found


def _settle(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("name,code,allowed", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_cell_is_contained(backend, name, code, allowed, monkeypatch):
    monkeypatch.setenv("PYVISION_TEST_SECRET", "leak-me")
    os.makedirs(CANARY_DIR, exist_ok=True)
    canary_before = set(os.listdir(CANARY_DIR))
    fds_before = len(os.listdir("/proc/self/fd"))
    server, port = _listener()
    accepted: list[object] = []
    done = threading.Event()
    waiter = threading.Thread(target=_accept, args=(server, accepted, done), daemon=True)
    waiter.start()
    with make_sandbox(backend, CONFIG) as box:
        box.start()
        uid = box.worker_uid
        started = time.monotonic()
        result = box.run(code.replace("PORT", str(port)))
        assert time.monotonic() - started < CONFIG.cell_timeout + 5
        assert result.status in allowed, (result.status, result.error, result.stderr[-500:])
        after = box.run("print(sum(range(10)))")
        if name in SELF_SABOTAGE:
            assert after.status in (CellStatus.OK, CellStatus.ERROR)
        else:
            assert after.ok and after.stdout == "45\n", after
        box.start()  # the next episode works too
        assert box.run("print('next episode')").stdout == "next episode\n"
        second_uid = box.worker_uid
    done.set()
    waiter.join()
    server.close()
    assert not accepted, "a cell reached a socket on the host's localhost"
    assert _settle(lambda: not _uid_processes(uid) and not _uid_processes(second_uid)), \
        "processes of the episode were left behind"
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 8  # a zygote or container on first use
    for directory in ("/etc", "/tmp", "/root", "/dev/shm"):
        assert not os.path.exists(f"{directory}/pyvision-pwned"), directory
    assert set(os.listdir(CANARY_DIR)) == canary_before


def _accept(server: socket.socket, accepted: list[object], done: threading.Event) -> None:
    """Record a connection to `server` if one comes before `done` is set."""
    while not done.is_set():
        try:
            accepted.append(server.accept())
            return
        except (socket.timeout, OSError):
            continue


def test_the_harness_survives_every_hostile_cell_in_one_episode(backend):
    """All hostile cells back to back in one episode: the env process is still fine after."""
    with make_sandbox(backend, CONFIG) as box:
        box.start()
        for _, code, allowed in HOSTILE[:12]:
            result = box.run(code.replace("PORT", "9"))
            assert result.status in allowed | {CellStatus.ERROR, CellStatus.TIMEOUT}
        assert box.run("print('alive')").stdout == "alive\n"
    assert os.getppid() > 0
