"""The runner and the benchmark harness, through the real `pyvision-env` entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import pytest

from pyvision_agents.bench import bench
from pyvision_agents.results import RESULTS_FILE
from pyvision_agents.base import AgentFailure
from pyvision_agents.runner import AGENT_ERROR, ENV_ERROR, run_episodes
from pyvision_agents.scripted import NoToolAgent, SolverAgent, answer_turn
from pyvision_agents.cli import main


def read_records(out):
    return [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]


def test_cli_list_names_every_env(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "PyVisionImage-v0" in printed and "PyVisionImageNoHint-v0" in printed


def test_cli_bench_solver_and_no_tool(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["bench", "--env", "PyVisionImage-v0", "--agent", "solver", "no-tool",
                 "--episodes", "4", "--out", str(out), "--no-progress", "--difficulty", "easy"])
    assert code == 0
    table = capsys.readouterr().out
    assert "solver" in table and "no-tool" in table and "accuracy" in table
    records = read_records(out)
    solver = [r for r in records if r["agent"] == "solver"]
    no_tool = [r for r in records if r["agent"] == "no-tool"]
    assert len(solver) == len(no_tool) == 4
    assert all(r["correct"] and r["code_cells"] == 1 and r["end_reason"] == "DONE" for r in solver)
    assert all(r["code_cells"] == 0 and r["turns"] == 1 for r in no_tool)
    assert [r["task_id"] for r in solver] == [r["task_id"] for r in no_tool]  # same seeds
    summary = json.loads((out / "summary.json").read_text())
    assert summary[0]["accuracy"] == 1.0 and summary[0]["episodes"] == 4
    assert summary[0]["accuracy_low"] > 0.4 and summary[0]["accuracy_high"] == 1.0
    for name in ("leaderboard.txt", "viewer.html", "accuracy_vs_visual_tokens.png",
                 "code_cells_per_episode.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_visual_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = solver[0]
    assert first["image_files"] and all((out / f).is_file() for f in first["image_files"])
    assert first["transcript"][0]["content"][1] == {"type": "image", "image": 0}


def test_a_run_killed_halfway_resumes_with_no_duplicate_and_no_gap(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pyvision_agents.cli", "bench", "--env", "PyVisionImage-v0",
               "--agent", "no-tool", "solver", "--episodes", "6", "--out", str(out), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / RESULTS_FILE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or path.read_text().count("\n") < 8):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = read_records(out)
    assert 8 <= len(written) < 12  # killed halfway
    assert main(command[3:]) == 0
    records = read_records(out)
    keys = [(r["agent"], r["episode"]) for r in records]
    assert sorted(keys) == sorted((a, i) for a in ("no-tool", "solver") for i in range(6))
    assert records[: len(written)] == written  # nothing already written was lost or rewritten


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path):
    out = tmp_path / "run"
    bench(["PyVisionImage-v0"], ["no-tool"], 5, out, progress=False)
    path = out / RESULTS_FILE
    lines = path.read_text().splitlines(keepends=True)
    # As if killed halfway: two episodes written, a third torn mid-line.
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    summaries = bench(["PyVisionImage-v0"], ["no-tool"], 5, out, progress=False)
    records = read_records(out)
    assert sorted(r["episode"] for r in records) == [0, 1, 2, 3, 4]
    assert summaries[0].episodes == 5
    assert [r["task_id"] for r in records[:2]] == [json.loads(l)["task_id"] for l in lines[:2]]


class _Recorder:
    """Wraps an agent and records the batch size of every call."""

    def __init__(self, agent):
        self.agent, self.name, self.batches = agent, agent.name, []

    def act(self, contexts):
        self.batches.append(len(contexts))
        return self.agent.act(contexts)


def test_runner_batches_active_episodes():
    agent = _Recorder(SolverAgent())
    make_env = lambda: gym.make("PyVisionImage-v0", difficulty="easy")  # noqa: E731
    records = list(run_episodes(make_env, agent, [(i, i) for i in range(5)], num_envs=3))
    assert sorted(r.episode for r in records) == list(range(5))
    assert max(agent.batches) == 3 and all(r.correct for r in records)


class _BrokenEnv(gym.Wrapper):
    def step(self, action):
        raise RuntimeError("the env broke")


def test_an_env_that_raises_is_recorded_and_the_run_goes_on():
    make_env = lambda: _BrokenEnv(gym.make("PyVisionImage-v0"))  # noqa: E731
    records = list(run_episodes(make_env, NoToolAgent(), [(0, 0), (1, 1)]))
    assert [r.end_reason for r in records] == [ENV_ERROR, ENV_ERROR]
    assert "the env broke" in records[0].error


class _FailingAgent:
    """Fails for the episode in slot 0, plays the others."""

    name = "flaky"

    def act(self, contexts):
        return [AgentFailure("endpoint down") if c.slot == 0 else NoToolAgent().act([c])[0]
                for c in contexts]


def test_an_agent_failure_ends_only_that_episode():
    make_env = lambda: gym.make("PyVisionImage-v0")  # noqa: E731
    records = list(run_episodes(make_env, _FailingAgent(), [(0, 0), (1, 1), (2, 2)], num_envs=2))
    reasons = sorted(r.end_reason for r in records)
    assert reasons.count(AGENT_ERROR) >= 1 and "DONE" in reasons and len(records) == 3
    failed = next(r for r in records if r.end_reason == AGENT_ERROR)
    assert failed.error == "endpoint down" and failed.task_id
    assert failed.ground_truth == ""  # the env reveals the answer only when its episode ends
    done = next(r for r in records if r.end_reason == "DONE")
    assert done.ground_truth


def test_a_sync_vector_env_from_make_vec_works():
    envs = gym.make_vec("PyVisionImage-v0", num_envs=2, vectorization_mode="sync", difficulty="easy")
    agent = _Recorder(SolverAgent())
    try:
        records = list(run_episodes(envs, agent, [(i, i) for i in range(3)]))
    finally:
        envs.close()
    assert sorted(r.episode for r in records) == [0, 1, 2] and all(r.correct for r in records)
    assert max(agent.batches) == 2


def test_unknown_agent_suggests_a_name(tmp_path):
    with pytest.raises(ValueError, match="solver"):
        bench(["PyVisionImage-v0"], ["solvr"], 1, tmp_path, progress=False)
    with pytest.raises(ValueError, match="openai"):
        bench(["PyVisionImage-v0"], ["opnai:x"], 1, tmp_path, progress=False)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_cli_reports_an_unknown_env_without_a_traceback(tmp_path, capsys):
    assert main(["bench", "--env", "PyVisionImag-v0", "--out", str(tmp_path)]) == 2
    assert "Did you mean: `PyVisionImage`" in capsys.readouterr().err


def test_answer_turn_is_parsed_back():
    from pyvision_env.protocol import parse_turn

    assert parse_turn(answer_turn("12")).answer == "12"
