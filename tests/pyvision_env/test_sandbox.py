"""Tests for the sandbox backends: behaviour, capture, limits, failures and cleanup.

Every test runs against each backend; Docker ones skip, with the reason, where no daemon or
image is available (`bash scripts/ci_docker.sh` sets both up).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from pyvision_env.sandbox import (
    CellStatus,
    LocalSandbox,
    SandboxConfig,
    SandboxStartError,
    backend_unavailable,
    make_sandbox,
)
from pyvision_env.sandbox.base import truncate_middle

IMAGE = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def Box(request):
    """A factory of sandboxes of one backend: `Box(config=None)`."""
    reason = backend_unavailable(request.param)
    if reason:
        pytest.skip(f"{request.param} backend unavailable: {reason}")
    return lambda config=None: make_sandbox(request.param, config)


@pytest.fixture
def sandbox(Box):
    with Box(SandboxConfig(cell_timeout=10.0)) as box:
        box.start(images=[IMAGE])
        yield box


def _alive(pid: int) -> bool:
    """True while `pid` is a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes running as `uid`, seen from the host."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid and _alive(int(entry)):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def _wait_no_processes(uid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while _processes_of(uid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- state and globals ---------------------------------------------------------------------------

def test_state_persists_across_cells(sandbox):
    assert sandbox.run("x = 41\ndef inc(v):\n    return v + 1").ok
    result = sandbox.run("print(inc(x))")
    assert result.status is CellStatus.OK
    assert result.stdout == "42\n"
    assert not result.state_lost


def test_preloaded_globals(sandbox):
    sandbox.run(f"EXPECTED = np.frombuffer({IMAGE.tobytes()!r}, np.uint8).reshape({IMAGE.shape})")
    result = sandbox.run(
        "print(type(image_clue_0).__name__, image_clue_0.mode, image_clue_0.size)\n"
        "print(np.__name__, plt.__name__, matplotlib.get_backend().lower(), Image.__name__)\n"
        "print(np.array_equal(np.asarray(image_clue_0), EXPECTED))")
    assert result.ok, result.error
    assert result.stdout.splitlines() == [
        "Image RGB (64, 48)", "numpy matplotlib.pyplot agg PIL.Image", "True"]


def test_several_images_become_numbered_globals(Box):
    with Box() as box:
        box.start(images=[IMAGE, np.zeros((5, 7), np.uint8)])
        result = box.run("print(image_clue_0.size, image_clue_1.size, image_clue_1.mode)")
    assert result.stdout == "(64, 48) (7, 5) RGB\n"


def test_bad_image_is_rejected_before_starting(Box):
    with Box() as box, pytest.raises(ValueError, match=r"images\[0\] must be a uint8"):
        box.start(images=[np.zeros((4, 4, 3), np.float32)])


def test_unreadable_video_fails_start_clearly(Box, tmp_path):
    with Box() as box, pytest.raises(SandboxStartError, match="could not load"):
        box.start(videos=[tmp_path / "missing.mp4"])


def test_video_becomes_a_video_clue_global(Box, tmp_path):
    pytest.importorskip("av")
    pytest.importorskip("pyvision_env.media.video")
    from pyvision_env.media.encode import write_video

    path = write_video(tmp_path / "clip.mp4",
                       [np.full((32, 32, 3), value, np.uint8) for value in range(0, 240, 30)], fps=10)
    with Box() as box:
        box.start(videos=[path])
        result = box.run("print(len(video_clue_0), video_clue_0[0].asnumpy().shape)")
    assert result.ok, result.error
    assert result.stdout == "8 (32, 32, 3)\n"


# -- output ---------------------------------------------------------------------------------------

def test_stdout_and_stderr_are_captured_separately(sandbox):
    result = sandbox.run("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_long_output_keeps_head_and_tail_and_counts_the_cut(Box):
    limit = 200
    with Box(SandboxConfig(max_output_bytes=limit)) as box:
        box.start()
        result = box.run("print('HEAD' + 'x' * 10_000 + 'TAIL', end='')")
    assert len(result.stdout) == limit
    assert result.stdout.startswith("HEADxxx")
    assert result.stdout.endswith("xxxTAIL")
    assert result.stdout_cut == (100, 10_008 - limit)  # the true count of what is not there
    shown = truncate_middle(result.stdout, 0, result.stdout_cut)
    assert shown.count("characters omitted") == 1 and "[9808 characters omitted]" in shown


def test_stdout_buffer_takes_bytes(sandbox):
    result = sandbox.run("import sys\nsys.stdout.buffer.write('é'.encode()[:1])\n"
                         "sys.stdout.buffer.write('é'.encode()[1:] + b'\\xff!')\nprint()")
    assert result.ok, result.error
    assert result.stdout == "é\ufffd!\n"


def test_text_is_valid_utf8_without_control_characters(sandbox):
    result = sandbox.run("import sys\nprint('a\\ud800b\\x1b[2J\\r\\x00c\\td')\n"
                         "print('\\udfff', file=sys.stderr)\nraise ValueError('\\ud800\\x07')")
    assert result.stdout == "a\ufffdb[2Jc\td\n"
    assert result.stderr == "\ufffd\n"
    assert result.error.value == "\ufffd"
    for text in (result.stdout, result.stderr, result.error.value, result.error.traceback):
        text.encode("utf-8")  # never raises


def test_output_at_the_limit_is_not_cut(Box):
    with Box(SandboxConfig(max_output_bytes=200)) as box:
        box.start()
        result = box.run("print('y' * 100, end='')")
    assert result.stdout == "y" * 100


def test_printing_50_mb_is_truncated_and_memory_stays_bounded(sandbox):
    rss = "int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])"
    before = int(sandbox.run(f"print({rss})").stdout)
    result = sandbox.run("line = 'z' * 999\nfor i in range(50_000):\n    print(line)")
    after = int(sandbox.run(f"print({rss})").stdout)
    assert result.ok
    assert len(result.stdout) <= SandboxConfig().max_output_bytes
    assert result.stdout_cut[1] == 50_000 * 1000 - len(result.stdout)
    assert after - before < 20_000, f"worker RSS grew by {after - before} kB"


# -- errors ---------------------------------------------------------------------------------------

def test_exception_gives_error_with_cell_traceback(sandbox):
    result = sandbox.run("a = 1\nb = a / 0")
    assert result.status is CellStatus.ERROR
    assert (result.error.name, result.error.value) == ("ZeroDivisionError", "division by zero")
    assert 'File "<cell-' in result.error.traceback
    assert "b = a / 0" in result.error.traceback
    assert "worker.py" not in result.error.traceback


def test_output_before_an_exception_is_kept(sandbox):
    result = sandbox.run("print('partial')\nraise ValueError('bad value')")
    assert result.stdout == "partial\n"
    assert (result.error.name, result.error.value) == ("ValueError", "bad value")


def test_syntax_error_is_an_error_result(sandbox):
    result = sandbox.run("def f(:\n    pass")
    assert result.status is CellStatus.ERROR
    assert result.error.name == "SyntaxError"
    assert "def f(:" in result.error.traceback
    assert sandbox.run("print('still fine')").stdout == "still fine\n"


def test_sys_exit_is_an_error_and_keeps_the_interpreter(sandbox):
    sandbox.run("kept = 'yes'")
    result = sandbox.run("import sys\nsys.exit(3)")
    assert result.status is CellStatus.ERROR
    assert (result.error.name, result.error.value) == ("SystemExit", "3")
    assert not result.state_lost
    assert sandbox.run("print(kept)").stdout == "yes\n"


def test_os_exit_is_a_crash_error_and_the_worker_restarts(sandbox):
    sandbox.run("lost = 1")
    result = sandbox.run("import os\nos._exit(7)")
    assert result.status is CellStatus.ERROR
    assert result.error.name == "InterpreterCrashed"
    assert "exited with code 7" in result.error.value
    assert result.state_lost
    after = sandbox.run("print(image_clue_0.size, 'lost' in globals())")
    assert after.ok and after.stdout == "(64, 48) False\n"


def test_segfault_reports_the_signal(sandbox):
    result = sandbox.run("import ctypes\nctypes.string_at(0)")
    assert result.status is CellStatus.ERROR
    assert "SIGSEGV" in result.error.value
    assert sandbox.run("print('back')").stdout == "back\n"


def test_timeout_restarts_the_worker_with_the_images(Box):
    with Box(SandboxConfig(cell_timeout=1.0)) as box:
        box.start(images=[IMAGE])
        box.run("earlier = 5")
        result = box.run("while True:\n    pass")
        assert result.status is CellStatus.TIMEOUT
        assert result.state_lost
        assert result.error.value == "the cell ran past its 1 s time limit"
        assert 1.0 <= result.duration < 3.0
        after = box.run("print(image_clue_0.size, 'earlier' in globals())")
    assert after.ok and after.stdout == "(64, 48) False\n"


def test_per_call_timeout_overrides_config(sandbox):
    result = sandbox.run("import time\ntime.sleep(5)", timeout=0.3)
    assert result.status is CellStatus.TIMEOUT
    assert result.duration < 2.0


def test_timeout_kills_processes_the_cell_started(sandbox):
    sandbox.run("import subprocess\n"
                "child = subprocess.Popen(['sleep', '60'], start_new_session=True)")
    uid = sandbox.worker_uid
    assert len(_processes_of(uid)) == 2
    assert sandbox.run("import time\ntime.sleep(60)", timeout=0.5).status is CellStatus.TIMEOUT
    assert _wait_no_processes(uid)


# -- figures --------------------------------------------------------------------------------------

def test_plt_show_returns_rgb_pixels_of_the_figure_size(sandbox):
    result = sandbox.run(
        "fig = plt.figure(figsize=(4, 3), dpi=50)\nplt.plot([0, 1], [1, 0])\nplt.show()")
    assert result.ok, result.error
    assert len(result.figures) == 1
    figure = result.figures[0]
    assert figure.shape == (150, 200, 3) and figure.dtype == np.uint8
    assert figure.min() < 128 < figure.max()


def test_plt_show_captures_every_open_figure_then_closes_them(sandbox):
    result = sandbox.run(
        "for size in (2, 3, 4):\n"
        "    plt.figure(figsize=(size, 1), dpi=10)\n"
        "plt.show()\n"
        "print(len(plt.get_fignums()))")
    assert [f.shape for f in result.figures] == [(10, 20, 3), (10, 30, 3), (10, 40, 3)]
    assert result.stdout == "0\n"


@pytest.mark.parametrize("show", [
    "import matplotlib.pyplot as P\nP.show()",
    "from matplotlib import pyplot as P\nP.show()",
    "from matplotlib.pyplot import show\nshow()",
    "fig.show()",
    "fig.canvas.manager.show()",
    "display(fig)",
], ids=["import-as", "from-import-as", "bare-show", "figure-show", "manager-show", "display"])
def test_every_way_of_showing_a_figure_captures_it(sandbox, show):
    result = sandbox.run("fig = plt.figure(figsize=(2, 2), dpi=10)\n" + show)
    assert result.ok, result.error
    assert [f.shape for f in result.figures] == [(20, 20, 3)]


def test_figure_made_without_pyplot_can_be_displayed(sandbox):
    result = sandbox.run(
        "from matplotlib.figure import Figure\nfig = Figure(figsize=(3, 1), dpi=10)\n"
        "fig.add_subplot().plot([1, 2])\ndisplay(fig)")
    assert [f.shape for f in result.figures] == [(10, 30, 3)]


def test_display_and_image_show_capture_images(sandbox):
    result = sandbox.run(
        "display(image_clue_0)\n"
        "image_clue_0.crop((0, 0, 10, 5)).show()\n"
        "display(np.zeros((4, 6), dtype=np.uint8))\n"
        "display('not an image')")
    assert [f.shape for f in result.figures] == [(48, 64, 3), (5, 10, 3), (4, 6, 3)]
    np.testing.assert_array_equal(result.figures[0], IMAGE)
    np.testing.assert_array_equal(result.figures[1], IMAGE[:5, :10])
    assert result.stdout == "'not an image'\n"


def test_the_text_plt_show_in_a_string_captures_nothing(sandbox):
    result = sandbox.run("plt.figure()\ncode = 'plt.show()'\nprint(code)")
    assert result.figures == ()
    assert result.stdout == "plt.show()\n"


def test_only_figures_shown_in_this_cell_are_returned(sandbox):
    first = sandbox.run("plt.figure(figsize=(1, 1), dpi=10)\nplt.show()")
    second = sandbox.run("plt.figure(figsize=(2, 1), dpi=10)\nplt.show()")
    third = sandbox.run("print('no figures here')")
    assert [f.shape for f in first.figures] == [(10, 10, 3)]
    assert [f.shape for f in second.figures] == [(10, 20, 3)]
    assert third.figures == ()


def test_figure_count_and_pixel_caps(Box):
    config = SandboxConfig(max_figures=2, max_figure_pixels=100 * 100)
    with Box(config) as box:
        box.start()
        result = box.run(
            "for _ in range(3):\n    plt.figure(figsize=(4, 2), dpi=100)\nplt.show()")
    assert len(result.figures) == 2
    for figure in result.figures:
        height, width, _ = figure.shape
        assert height * width <= 100 * 100 and abs(width / height - 2) < 0.1
    assert "downscaled from 400x200" in result.notes[0]
    assert "1 more figure(s)" in result.notes[-1]
    assert result.stderr == ""


def test_huge_figure_is_drawn_small_instead_of_allocated(Box):
    with Box(SandboxConfig(max_figure_pixels=100 * 100)) as box:
        box.start()
        result = box.run("plt.figure(figsize=(300, 300), dpi=100)\nplt.show()")
    assert result.ok, result.error
    assert [f.shape for f in result.figures] == [(100, 100, 3)]
    assert "downscaled from 30000x30000 to 100x100" in result.notes[0]


# -- lifecycle ------------------------------------------------------------------------------------

def test_close_kills_the_worker_and_removes_the_workdir(Box):
    box = Box()
    box.start()
    uid = box.worker_uid
    workdir = box.run("import os; print(os.getcwd())").stdout.strip()
    assert workdir == box.workdir
    assert _processes_of(uid)
    box.close()
    assert _wait_no_processes(uid)
    if isinstance(box, LocalSandbox):  # Docker's lives in the container's tmpfs
        assert _wait_dead_path(workdir)
    with pytest.raises(RuntimeError, match="call start"):
        box.run("1")


def _wait_dead_path(path: str, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_cwd_is_private_and_environment_is_scrubbed(Box, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    with Box() as box:
        box.start()
        result = box.run("import os\nprint(os.getcwd() == os.environ['HOME'])\n"
                         "print('OPENAI_API_KEY' in os.environ)")
    assert result.stdout == "True\nFalse\n"


def test_two_sandboxes_do_not_share_state(Box):
    with Box() as first, Box() as second:
        first.start()
        second.start()
        first.run("shared = 'first'")
        result = second.run("print('shared' in globals())")
    assert result.stdout == "False\n"


def test_start_twice_gives_a_fresh_interpreter(sandbox):
    old_uid = sandbox.worker_uid
    sandbox.run("stale = 1\nopen('left-behind.txt', 'w').close()")
    sandbox.start()
    result = sandbox.run("import os\n"
                         "print('stale' in globals(), os.path.exists('left-behind.txt'))",
                         timeout=10)
    assert result.stdout == "False False\n"
    assert _wait_no_processes(old_uid)


def test_start_from_a_process_with_threads(Box):
    import threading

    stop = threading.Event()
    busy = [threading.Thread(target=stop.wait) for _ in range(4)]
    for thread in busy:
        thread.start()
    try:
        results = []

        def episode():
            with Box() as box:
                box.start(images=[IMAGE])
                results.append(box.run("print(image_clue_0.size)").stdout)

        runners = [threading.Thread(target=episode) for _ in range(3)]
        for thread in runners:
            thread.start()
        for thread in runners:
            thread.join(timeout=30)
    finally:
        stop.set()
    assert results == ["(64, 48)\n"] * 3


def test_make_sandbox():
    assert isinstance(make_sandbox(), LocalSandbox)
    config = SandboxConfig(cell_timeout=3)
    assert make_sandbox("local", config).config is config
    with pytest.raises(ValueError, match="known backends: docker, local"):
        make_sandbox("dockr")
