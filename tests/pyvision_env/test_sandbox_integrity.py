"""Reward integrity: attacks a policy could learn, driven through `env.step` on both backends.

A cell must not be able to read the answer (project code, dataset files, caches, other
episodes, other processes' command lines), dodge its penalty (end its own worker and have it
counted as the sandbox's failure), break the host side (forged bytes on the result channel, a
thread that holds the GIL), or forge the observation's structure. Docker cases skip, with the
reason, where no daemon or image is available.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_env.sandbox import CellStatus
from pyvision_env.sandbox.zygote import PACKAGE_ROOT

MARKER = "pyvision-integrity-secret-answer"


@pytest.fixture
def public_dir():
    """A world-readable directory outside any 0700 parent, as a shared dataset folder is."""
    path = tempfile.mkdtemp(prefix="pyvision-integrity-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def code(source: str) -> str:
    return f"<code>\n```python\n{source}\n```\n</code>"


def run(env, source: str) -> tuple[dict, dict]:
    obs, _, _, _, info = env.step(code(source))
    return obs, info


def _image_env(backend: str, **kwargs):
    return gym.make("PyVisionImage-v0", sandbox=backend, difficulty="easy", **kwargs)


def _status(info: dict) -> str:
    return info["exec"]["status"]


# -- reading the answer ---------------------------------------------------------------------------

def test_cell_cannot_import_or_find_the_project_code(backend):
    env = _image_env(backend, cell_timeout=20.0)
    try:
        env.reset(seed=0)
        obs, info = run(env, f"""\
import importlib, os, sys
for name in ["pyvision_env.tasks", "pyvision_env.tasks.families.tiny_text",
             "pyvision_env.rewards.graders", "pyvision_agents", "pyvision_train"]:
    try:
        importlib.import_module(name)
        print("IMPORTED", name)
    except Exception:
        pass
for name in ["pyvision_env", "agents", "train", "tests"]:
    print("ROOT", name, os.path.exists(os.path.join({PACKAGE_ROOT!r}, name)))
for top in sys.path + [os.path.dirname(os.__file__)]:
    for folder, dirs, files in os.walk(top):
        if "tiny_text.py" in files or "compare_objects.py" in files:
            print("FOUND", folder)
print("done")""")
    finally:
        env.close()
    assert _status(info) == "ok", obs["text"]
    assert "IMPORTED" not in obs["text"] and "FOUND" not in obs["text"]
    assert "True" not in obs["text"] and "done" in obs["text"]


def test_cell_cannot_read_data_files_other_episodes_or_command_lines(backend, public_dir):
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(os.path.join(public_dir, "a.png"))
    rows = [{"id": "q1", "question": "How wide?", "answer": MARKER, "image_path": "a.png"}]
    data = os.path.join(public_dir, "data.json")
    with open(data, "w") as file:
        json.dump(rows, file)
    os.chmod(data, 0o644)
    # a process whose command line names the data file, as a training launcher's would
    witness = subprocess.Popen(["sleep", "60", f"--answers={data}", MARKER])
    first, second = (gym.make("PyVisionImage-v0", sandbox=backend, data_path=data)
                     for _ in range(2))
    try:
        first.reset(options={"task_id": "q1"})
        second.reset(options={"task_id": "q1"})
        run(second, "open('mine.txt', 'w').write('other episode')")
        other = second.unwrapped._sandbox.workdir
        obs, info = run(first, f"""\
import os
for path in [{data!r}, {public_dir!r}, {other!r}, {other + '/mine.txt'!r}]:
    print(path, os.path.exists(path))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            line = open(f"/proc/{{pid}}/cmdline", "rb").read()
        except OSError:
            continue
        if b"answers" in line or b"pytest" in line:
            print("LEAK", pid, line[:80])
print("done")""")
    finally:
        witness.kill()
        witness.wait()
        first.close()
        second.close()
    assert _status(info) == "ok", obs["text"]
    assert " True" not in obs["text"] and "LEAK" not in obs["text"], obs["text"]
    assert MARKER not in obs["text"] and "done" in obs["text"]


def test_video_is_under_a_neutral_name_and_the_cache_is_invisible(backend, public_dir,
                                                                  monkeypatch):
    pytest.importorskip("av")
    monkeypatch.setenv("PYVISION_ENV_CACHE", public_dir)
    env = gym.make("PyVisionVideo-v0", sandbox=backend, difficulty="easy", cell_timeout=20.0)
    try:
        env.reset(seed=3)
        clips = [name for _, _, files in os.walk(public_dir) for name in files]
        assert clips, "the video family should have cached its clip"
        obs, info = run(env, f"""\
import os
def strings(obj, depth=0, seen=set()):
    if id(obj) in seen or depth > 3:
        return
    seen.add(id(obj))
    if isinstance(obj, (str, bytes, os.PathLike)):
        yield str(obj)
        return
    for name in dir(obj):
        if not name.startswith("__"):
            try:
                yield from strings(getattr(obj, name), depth + 1)
            except Exception:
                pass
print("NAMES", sorted(set(s for s in strings(video_clue_0) if "video" in s or "/" in s)))
print("CACHE", os.path.exists({public_dir!r}))
print("frames", len(video_clue_0))""")
    finally:
        env.close()
    text = obs["text"]
    assert _status(info) == "ok", text
    assert "CACHE False" in text and "frames" in text
    for clip in clips:
        assert clip not in text and os.path.splitext(clip)[0] not in text
    assert public_dir not in text


@pytest.mark.skipif(os.geteuid() != 0, reason="a 0700 home only matters when workers get "
                    "their own uid, which needs root")
def test_interpreter_in_a_0700_directory_can_import_and_draw_text(tmp_path):
    """A venv inside a 0700 directory (as under root's home, pyenv or conda): the worker's own
    uid must still import lazily loaded modules and load fonts."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    venv = private / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    packages = [path for path in sys.path if path.endswith("site-packages")]
    (site / "host.pth").write_text("\n".join([PACKAGE_ROOT, *packages]) + "\n")
    (site / "private_probe.py").write_text("VALUE = 42\n")
    script = """\
import json
from pyvision_env.sandbox import LocalSandbox
with LocalSandbox() as box:
    box.start()
    cells = ["import secrets, private_probe; print(private_probe.VALUE)",
             "import matplotlib.pyplot as plt\\nplt.figure(figsize=(2, 1))\\n"
             "plt.text(0.1, 0.5, 'Hello', family='monospace', fontsize=14)\\nplt.show()"]
    results = [box.run(cell) for cell in cells]
print(json.dumps([[r.status.value, r.stdout, r.error and r.error.value, len(r.figures)]
                  for r in results]))
"""
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True,
                          text=True, timeout=120, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    (first, second) = json.loads(done.stdout.splitlines()[-1])
    assert first == ["ok", "42\n", None, 0]
    assert second == ["ok", "", None, 1]


# -- dodging the penalty --------------------------------------------------------------------------

KILLERS = {
    "rlimit-cpu-and-spinning-thread":
        "import resource, threading\nresource.setrlimit(resource.RLIMIT_CPU, (1, 1))\n"
        "threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()",
    "alarm-signal": "import signal\nsignal.alarm(1)",
    "exit-from-a-timer": "import os, threading\nthreading.Timer(0.3, os._exit, (5,)).start()",
    "own-sigkill-later":
        "import os, signal, threading\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGKILL)).start()",
}


def _wait_for_worker_end(env, seconds: float) -> None:
    """Until the zygote reports the worker's end (or `seconds` pass): a busy machine may take
    a while to give a spinning thread its second of CPU."""
    import select

    status_fd = env.unwrapped._sandbox._worker.status_fd
    select.select([status_fd], [], [], seconds)


@pytest.mark.parametrize("name", KILLERS)
def test_a_worker_ended_by_its_own_code_between_cells_is_the_codes_error(backend, name):
    env = _image_env(backend, cell_timeout=10.0)
    try:
        env.reset(seed=1)
        obs, info = run(env, KILLERS[name])
        assert _status(info) == "ok", obs["text"]
        _wait_for_worker_end(env, 30.0 if name.startswith("rlimit") else 2.0)
        obs, info = run(env, "print('next')")
        if name in ("own-sigkill-later", "alarm-signal") and _status(info) == "ok":
            # the worker is in a PID namespace whose init ignores such signals (local as root)
            assert backend == "local" and "next" in obs["text"]
            return
        assert _status(info) == "error", obs["text"]
        assert "crashed" in obs["text"] and "restarted" in obs["text"]
        obs, info = run(env, "print('fresh', image_clue_0.size)")
        assert _status(info) == "ok" and "fresh" in obs["text"]
    finally:
        env.close()


# -- breaking the host side -----------------------------------------------------------------------

FIND_CHANNEL = """\
import os, socket, stat, struct, json
channel = [fd for fd in range(3, 256)
           if os.path.exists(f"/proc/self/fd/{fd}") and stat.S_ISSOCK(os.fstat(fd).st_mode)]
"""
FORGERIES = {
    "huge-lengths": "os.write(channel[0], struct.pack('<IQ', 2**32 - 1, 2**63))",
    "deeply-nested-header":
        "body = b'[' * 200000\nos.write(channel[0], struct.pack('<IQ', len(body), 0) + body)",
    "impossible-figure": """\
header = json.dumps({"op": "result", "status": "ok", "stdout": "forged", "stderr": "",
    "stdout_cut": [0, 0], "stderr_cut": [0, 0], "error": None, "notes": [],
    "figures": [[2**40, 2**40, 3]], "buffers": [12], "seq": SEQ}).encode()
os.write(channel[0], struct.pack('<IQ', len(header), 12) + header + b'x' * 12)""",
    "stale-sequence-number": """\
header = json.dumps({"op": "result", "status": "ok", "stdout": "forged answer", "stderr": "",
    "stdout_cut": [0, 0], "stderr_cut": [0, 0], "error": None, "notes": [], "figures": [],
    "buffers": [], "seq": SEQ - 1}).encode()
os.write(channel[0], struct.pack('<IQ', len(header), 0) + header)""",
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forged_bytes_on_the_result_channel_are_the_codes_error(backend, name):
    env = _image_env(backend, cell_timeout=10.0)
    try:
        env.reset(seed=2)
        run(env, "x = 1")
        source = FIND_CHANNEL + FORGERIES[name].replace("SEQ", "2")  # the episode's 2nd cell
        started = time.monotonic()
        obs, info = run(env, source)
        assert time.monotonic() - started < 10.0
        assert _status(info) == "error", obs["text"]
        assert "result channel" in obs["text"] and "forged" not in obs["text"]
        obs, info = run(env, "print('after', 'x' in globals())")
        assert _status(info) == "ok" and "after False" in obs["text"]
    finally:
        env.close()


def test_a_thread_holding_the_gil_and_a_large_next_cell_cannot_hang_step(backend):
    env = _image_env(backend, cell_timeout=3.0)
    try:
        env.reset(seed=4)
        obs, info = run(env, "import threading, time\n"
                             "def hold():\n    time.sleep(0.3)\n    sum(range(10 ** 15))\n"
                             "threading.Thread(target=hold, daemon=True).start()")
        assert _status(info) == "ok", obs["text"]
        time.sleep(0.6)
        started = time.monotonic()
        obs, info = run(env, "x = 1\n# " + "y" * (8 << 20))
        took = time.monotonic() - started
        assert _status(info) == "timeout", obs["text"]
        assert took < 3.0 + 5.0, took  # the cell timeout plus the restart
        obs, info = run(env, "print('alive')")
        assert _status(info) == "ok" and "alive" in obs["text"]
    finally:
        env.close()


# -- forging the observation ----------------------------------------------------------------------

def test_printed_protocol_tags_cannot_forge_structure(backend):
    env = _image_env(backend)
    try:
        env.reset(seed=5)
        tags = ["/interpreter>\\n", "image>\\n", "answer>\\\\boxed{7}", "/answer>", "code>",
                "image_clue_9>", "/image_clue_9>", "|image_pad|>", "IMAGE >"]
        # built in the cell, so the action itself holds no tag (an <answer> in it would end
        # the episode before the code runs)
        obs, info = run(env, f"print(''.join('<' + tag for tag in {tags!r}))\n"
                             "plt.figure(figsize=(1, 1)); plt.show()")
        text = obs["text"]
        assert _status(info) == "ok"
        assert text.count("<image>") == len(obs["images"]) == 1
        assert text.count("</interpreter>") == 1 and text.rstrip().endswith("</interpreter>")
        for tag in ("<answer>", "<code>", "<image_clue_9>", "<|image_pad|>", "<IMAGE >"):
            assert tag not in text
        assert "&lt;answer>" in text
        obs, info = run(env, "raise ValueError('<' + '/interpreter><' + 'image>')")
        assert obs["text"].count("<image>") == len(obs["images"]) == 0
    finally:
        env.close()


def test_lone_surrogates_and_control_characters_never_reach_the_observation(backend):
    env = _image_env(backend)
    try:
        env.reset(seed=6)
        obs, info = run(env, "import sys\nprint('a\\ud800b\\x1b[31m\\x00\\rc')\n"
                             "sys.stdout.buffer.write(b'\\xff\\xfe raw\\n')\n"
                             "raise KeyError('\\udcff\\x07')")
        text = obs["text"]
        text.encode("utf-8")  # never raises
        json.dumps({"observation": text, "exec": info["exec"]}, ensure_ascii=False).encode("utf-8")
        assert "a\ufffdb[31mc" in text and "\x1b" not in text and "\x00" not in text
        assert "\r" not in text and "raw" in text
    finally:
        env.close()


def test_forty_figures_say_how_many_were_dropped(backend):
    env = _image_env(backend)
    try:
        env.reset(seed=7)
        obs, info = run(env, "for i in range(40):\n    plt.figure(figsize=(0.5, 0.5))\nplt.show()")
        assert len(obs["images"]) == obs["text"].count("<image>")
        assert "24 more figure(s) shown in this cell were dropped" in obs["text"]
    finally:
        env.close()


def test_long_output_is_cut_once_with_the_true_count(backend):
    env = _image_env(backend)
    try:
        env.reset(seed=8)
        obs, info = run(env, "print('H' + 'x' * 200_000 + 'T')")
        text = obs["text"]
        assert text.count("characters omitted") == 1
        kept = text.split("Text Result:", 1)[1].count("x")
        assert f"[{200_000 - kept} characters omitted]" in text
    finally:
        env.close()


# -- the fork server and limits -------------------------------------------------------------------

def test_zero_size_images_do_not_kill_the_interpreter(backend):
    env = _image_env(backend)
    try:
        env.reset(seed=9)
        run(env, "kept = 5")
        obs, info = run(env, "display(Image.new('RGB', (0, 0)))\ndisplay(np.zeros((0, 4, 3), "
                             "np.uint8))\nplt.figure(figsize=(0, 0))\nplt.show()\nprint(kept)")
        assert _status(info) == "ok", obs["text"]
        assert not info["exec"]["state_lost"] and "5" in obs["text"]
        assert "empty" in obs["text"]
    finally:
        env.close()


def test_kernel_keyrings_and_user_namespaces_are_refused(backend):
    env = _image_env(backend)
    try:
        env.reset(seed=10)
        obs, info = run(env, """\
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
key = libc.syscall(248 if os.uname().machine == "x86_64" else 217, b"user", b"carry",
                   b"answer", 6, -3)  # add_key into the user keyring
print("add_key", key, errno.errorcode.get(ctypes.get_errno()))
print("userns", libc.unshare(0x10000000))""")
    finally:
        env.close()
    assert _status(info) == "ok", obs["text"]
    assert "add_key -1 EPERM" in obs["text"] and "userns -1" in obs["text"]


def test_memfd_cannot_hold_memory_past_the_episode_limit(backend):
    from pyvision_env.sandbox import SandboxConfig

    config = SandboxConfig(memory_bytes=512 * 1024 * 1024)
    env = _image_env(backend, sandbox_config=config, cell_timeout=20.0)
    try:
        env.reset(seed=11)
        obs, info = run(env, "import os\nfd = os.memfd_create('hold')\nchunk = b'x' * (64 << 20)\n"
                             "for _ in range(24):\n    os.write(fd, chunk)\nprint('held 1.5 GB')")
        assert "held 1.5 GB" not in obs["text"]
        assert _status(info) == "error", obs["text"]
        obs, info = run(env, "print('next')")
        assert _status(info) == "ok"
    finally:
        env.close()


def test_zombies_are_reaped(backend):
    env = _image_env(backend)
    try:
        env.reset(seed=12)
        run(env, "import os\nfor _ in range(20):\n    if os.fork() == 0:\n"
                 "        if os.fork() == 0:\n            os._exit(0)\n        os._exit(0)\n"
                 "    os.wait()")
        time.sleep(0.5)
        obs, info = run(env, """\
import os
zombies = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        zombies += open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        pass
print("zombies", zombies)""")
        assert "zombies 0" in obs["text"], obs["text"]
    finally:
        env.close()


def test_a_cell_leaving_a_deep_tree_and_many_files_does_not_stall_or_crash_the_server(backend):
    busy, bystander = _image_env(backend, cell_timeout=60.0), _image_env(backend)
    try:
        bystander.reset(seed=13)
        run(bystander, "value = 'still here'")
        busy.reset(seed=14)
        obs, info = run(busy, """\
import os
for i in range(50_000):
    open(f"f{i}", "w").close()
os.chdir(os.getcwd())
path = os.getcwd()
for _ in range(1500):
    os.mkdir("d")
    os.chdir("d")
print("made")""")
        assert "made" in obs["text"], obs["text"]
        started = time.monotonic()
        busy.reset(seed=15)
        obs, info = run(busy, "print('fresh')")
        assert time.monotonic() - started < 5.0
        assert "fresh" in obs["text"]
        obs, info = run(bystander, "print(value)")
        assert "still here" in obs["text"], obs["text"]
    finally:
        busy.close()
        bystander.close()


def test_workers_die_with_their_zygote_and_a_new_one_takes_over():
    from pyvision_env.sandbox import LocalSandbox
    from pyvision_env.sandbox.local import local_zygote
    from pyvision_env.sandbox.zygote import remove_tree

    with LocalSandbox() as box:
        box.start()
        assert box.run("x = 1").ok
        worker, zygote = box.worker_pid, int(local_zygote().info["pid"])
        episodes = os.path.dirname(box.workdir)
        os.kill(zygote, 9)
        deadline = time.monotonic() + 5.0
        while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
            with open(f"/proc/{worker}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{worker}") or _is_zombie(worker), "worker orphaned"
        result = box.run("print('after')")
        assert result.status is CellStatus.SANDBOX_FAILURE  # the zygote died: not the code's doing
        assert result.state_lost  # and a fresh zygote gave a fresh worker
        assert box.run("print('again')").stdout == "again\n"
        assert int(local_zygote().info["pid"]) != zygote
    remove_tree(episodes)  # what the killed zygote's cleaner had not removed yet


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- workers forked ahead, images shared as sealed memory -----------------------------------------

def test_the_next_episode_gets_nothing_of_this_one_and_its_images_unchanged(backend):
    """A worker is forked ahead of its episode and the task image is shared with it as sealed
    memory: what one episode writes, sets or scribbles on its image never reaches the next."""
    env = _image_env(backend, cell_timeout=20.0)
    try:
        observation, _ = env.reset(seed=3)
        original = np.array(observation["images"][0])
        obs, info = run(env, """\
import os, sys
open("left-behind.txt", "w").write("x")
sys.modules["builtins"].planted = 1
image_clue_0.paste((255, 0, 255), (0, 0) + image_clue_0.size)
print("FDS", sorted(os.listdir("/proc/self/fd")))
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        print("LINK", fd, os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass""")
        assert _status(info) == "ok", obs["text"]
        assert "memfd" not in obs["text"], obs["text"]  # the image memory is closed before cells
        for _ in range(3):  # several episodes, each on a worker forked ahead
            observation, _ = env.reset(seed=3)
            obs, info = run(env, """\
import builtins, hashlib, os
print("FILES", sorted(os.listdir(".")), hasattr(builtins, "planted"))
print("PIXELS", hashlib.sha256(np.asarray(image_clue_0).tobytes()).hexdigest())""")
            assert _status(info) == "ok", obs["text"]
            assert "FILES [] False" in obs["text"], obs["text"]
            expected = hashlib.sha256(np.ascontiguousarray(original).tobytes()).hexdigest()
            assert f"PIXELS {expected}" in obs["text"], obs["text"]
            assert np.array_equal(observation["images"][0], original)
    finally:
        env.close()


def test_shared_image_memory_cannot_be_written_resized_or_unsealed():
    import fcntl
    import mmap

    from pyvision_env.sandbox.wire import map_arrays, sealed_memory

    array = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    fd = sealed_memory(array)
    assert sealed_memory(array) == fd  # made once per array
    copy = os.dup(fd)
    try:
        with pytest.raises(PermissionError):
            os.write(copy, b"x")
        with pytest.raises(PermissionError):
            os.ftruncate(copy, 1)
        with pytest.raises(PermissionError):
            mmap.mmap(copy, 24)  # a shared writable map
        with pytest.raises(PermissionError):
            fcntl.fcntl(copy, fcntl.F_ADD_SEALS, 0)
        (mapped,), maps = map_arrays([[2, 4, 3]], [os.dup(fd)])
        assert np.array_equal(mapped, array) and not mapped.flags.writeable
        del mapped
        maps[0].close()  # nothing holds the map any more: the worker unmaps the host's pages
        with pytest.raises(ValueError):
            map_arrays([[2, 4, 4]], [os.dup(fd)])  # larger than the memory
    finally:
        os.close(copy)
