"""The `pyvision-train` command end to end: the smoke config, a kill after a checkpoint, resume, plot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "train" / "configs" / "smoke-cpu.yaml"


def _command(tmp_path: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "pyvision_train.cli", "--config", str(SMOKE),
            "--set", f"output_dir={tmp_path / 'run'}", "--set", f"model.path={model}",
            "--set", "grpo.max_steps=4", "--set", "grpo.max_completion_length=12",
            "--set", "data.train_prompts=8", "--set", "grpo.report_to=[]"]


def _wait_for(path: Path, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (rc {process.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_model):
    command = _command(tmp_path, tiny_model)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(run / "checkpoint-1" / "trainer_state.json", first, 240)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the run's own process group only
        first.wait()
    checkpoints = sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")
                         if (p / "trainer_state.json").exists())
    assert checkpoints and checkpoints[-1] < 4, "the run finished before it could be killed"
    logged_before = len((run / "metrics.jsonl").read_text().splitlines())
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["global_step"] == 4
    assert summary["resumed_from"].endswith(f"checkpoint-{checkpoints[-1]}")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[logged_before] == checkpoints[-1] + 1  # the restarted run picks up after the checkpoint
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "pyvision/code_cells/mean" in r][-1]
    for key in ("pyvision/code_cells/zero_share", "pyvision/turns/mean", "pyvision/visual_tokens/mean",
                "pyvision/end_reason/EXCEED_MAX_TURNS", "pyvision/filter/group_pass_rate",
                "pyvision/time/generation_s", "pyvision/reward/tool", "loss"):
        assert isinstance(last[key], (int, float))

    plotted = subprocess.run([sys.executable, "-m", "pyvision_train.cli", "plot", str(run)],
                             capture_output=True, text=True, timeout=120)
    assert plotted.returncode == 0, plotted.stderr
    png = Path(plotted.stdout.strip())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_config_exits_2_with_the_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: x\nmodel: {path: m}\nenv: {max_turns: 3}\n")
    done = subprocess.run([sys.executable, "-m", "pyvision_train.cli", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "env.max_turns is not a field of env" in done.stderr
    assert "Traceback" not in done.stderr
