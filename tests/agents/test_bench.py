"""The runner and the benchmark harness, through the real `pyvision-env` entry point."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from agents.bench import bench
from agents.results import RESULTS_FILE
from agents.runner import ENV_ERROR, run_episodes
from agents.scripted import NoToolAgent, SolverAgent, answer_turn
from pyvision_env.cli import main


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


def test_unknown_agent_suggests_a_name(tmp_path):
    with pytest.raises(ValueError, match="solver"):
        bench(["PyVisionImage-v0"], ["solvr"], 1, tmp_path, progress=False)


def test_answer_turn_is_parsed_back():
    from pyvision_env.protocol import parse_turn

    assert parse_turn(answer_turn("12")).answer == "12"
