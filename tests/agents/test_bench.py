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
    assert [r["task_id"] for r in records[:2]] == [json.loads(line)["task_id"] for line in lines[:2]]


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


# ---------------------------------------------------------------- reruns, errors, arguments

def run_cli(capsys, *args):
    """`pyvision-env bench ARGS --no-progress`: (exit code, stdout, stderr)."""
    code = main(["bench", *args, "--no-progress", "--no-plots", "--no-viewer"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_rerun_with_other_settings_stops_and_says_what_differs(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert run_cli(capsys, "--agent", "no-tool", "--episodes", "3", "--out", out)[0] == 0
    before = (tmp_path / "run" / RESULTS_FILE).read_bytes()
    code, printed, err = run_cli(capsys, "--agent", "no-tool", "--episodes", "3", "--out", out,
                                 "--seed", "7", "--difficulty", "hard")
    assert code == 2 and printed == "" and len(err.strip().splitlines()) == 1
    assert "--seed was 0, now 7" in err and "difficulty was None, now 'hard'" in err
    assert "--overwrite" in err and "--out" in err
    assert (tmp_path / "run" / RESULTS_FILE).read_bytes() == before  # nothing lost, nothing added
    code, printed, err = run_cli(capsys, "--agent", "no-tool", "--episodes", "3", "--out", out,
                                 "--seed", "7", "--difficulty", "hard", "--overwrite")
    records = read_records(tmp_path / "run")
    assert code == 0 and [r["seed"] for r in records] == [7, 8, 9]


def test_a_changed_data_file_is_another_run(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    data = tmp_path / "tasks.jsonl"
    row = {"id": 1, "question": "How many red squares?", "answer": "1", "image_path": str(tmp_path / "red.png")}
    data.write_text(json.dumps(row) + "\n")
    out = str(tmp_path / "run")
    assert run_cli(capsys, "--agent", "no-tool", "--episodes", "1", "--out", out, "--data-path", str(data))[0] == 0
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    identity = manifest["envs"]["PyVisionImage-v0"]["data_file"]
    assert identity["path"] == str(data) and identity["size"] == data.stat().st_size
    data.write_text(json.dumps({**row, "answer": "2"}) + "\n")  # same path, new content
    code, _, err = run_cli(capsys, "--agent", "no-tool", "--episodes", "1", "--out", out, "--data-path", str(data))
    assert code == 2 and f"data file {data} changed" in err


def test_a_matching_rerun_skips_what_is_recorded_and_says_so(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert run_cli(capsys, "--agent", "no-tool", "solver", "--episodes", "2", "--out", out)[0] == 0
    lines = (tmp_path / "run" / RESULTS_FILE).read_text().splitlines()
    code, printed, err = run_cli(capsys, "--agent", "no-tool", "solver", "--episodes", "3", "--out", out,
                                 "--api-key", "secret")  # more episodes; a run-only option differs
    assert code == 0 and "skipping 4 episode(s) already recorded" in err
    records = read_records(tmp_path / "run")
    assert [json.dumps(r) for r in records[:4]] == lines  # kept as they were
    assert sorted((r["agent"], r["episode"]) for r in records[4:]) == [("no-tool", 2), ("solver", 2)]
    assert "secret" not in (tmp_path / "run" / "run.json").read_text()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["episodes"] == 3
    code, printed, err = run_cli(capsys, "--agent", "solver", "--episodes", "3", "--out", out)
    assert code == 0 and "skipping 3 episode(s)" in err and len(read_records(tmp_path / "run")) == 6
    assert "solver" in printed and "no-tool" not in printed  # the table shows what was asked


def test_errored_episodes_are_played_again_on_resume(tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "clue.png"
    image.write_bytes(b"not a PNG yet")  # broken media: every reset fails
    data = tmp_path / "tasks.jsonl"
    data.write_text(json.dumps({"id": 1, "question": "How many?", "answer": "3",
                                "image_path": str(image)}) + "\n")
    args = ("--agent", "no-tool", "--episodes", "2", "--out", str(tmp_path / "run"), "--data-path", str(data))
    code, _, err = run_cli(capsys, *args)
    assert code == 1 and "cannot read image" in err
    failed = read_records(tmp_path / "run")
    assert [r["end_reason"] for r in failed] == [ENV_ERROR, ENV_ERROR]
    Image.new("RGB", (32, 32), "blue").save(image)  # the user fixes the media and runs again
    code, _, err = run_cli(capsys, *args)
    assert code == 0 and "skipping 0 episode(s) already recorded, playing 2 that ended in an error again" in err
    records = read_records(tmp_path / "run")
    assert records[:2] == failed and [r["end_reason"] for r in records[2:]] == ["DONE", "DONE"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())[0]
    assert summary["episodes"] == 2 and summary["errors"] == 0  # the new records supersede the old


def test_a_group_with_only_errors_fails_the_command_and_names_the_error(tmp_path, capsys):
    image = tmp_path / "clue.png"
    image.write_bytes(b"truncated")
    data = tmp_path / "tasks.jsonl"
    data.write_text(json.dumps({"id": 1, "question": "How many?", "answer": "3", "image_path": str(image)}) + "\n")
    code, printed, err = run_cli(capsys, "--agent", "no-tool", "solver", "--episodes", "3",
                                 "--out", str(tmp_path / "run"), "--data-path", str(data))
    assert code == 1 and "no-tool" in printed  # the table and files are still written
    failures = [line for line in err.splitlines() if "every episode of" in line]
    assert len(failures) == 2 and "(3 errors)" in failures[0]
    assert f"most common: ValueError: cannot read image {image}" in failures[0]


@pytest.mark.parametrize("args, message", [
    (["--episodes", "0"], "--episodes must be at least 1, got 0"),
    (["--env-opt", "max_turn=3"], "unknown env option 'max_turn'; did you mean 'max_turns'?"),
    (["--env-opt", "max_turns=many"], "PyVisionImage-v0 rejects max_turns='many'"),
    (["--env-opt", "chat_form=3"], "chat_form must be one of 'observation', 'inline', got 3 (int)"),
    (["--data-path", "missing.jsonl"], "missing.jsonl: data file not found"),
    (["--agent", "solvr"], "unknown agent 'solvr'"),
    (["--agent", "openai:m", "--agent-opt", "tempreature=0.5"], "bad option for agent 'openai:m'"),
    (["--agent", "no-tool", "no-tool"], "two agents would both be named 'no-tool'"),
], ids=["episodes-0", "unknown-env-opt", "ill-typed-env-opt", "bad-env-opt-value", "missing-data-file",
        "unknown-agent", "unknown-agent-opt", "repeated-agent"])
def test_bad_arguments_get_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    code, printed, err = run_cli(capsys, "--out", str(tmp_path / "run"), *args)
    assert code == 2 and printed == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_malformed_data_file_is_one_line_naming_the_row(tmp_path, capsys):
    data = tmp_path / "tasks.jsonl"
    data.write_text('{"id": 1, "question": "How many?"}\n')
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "run"), "--data-path", str(data))
    assert code == 2 and err.count("\n") == 1
    assert "field 'answer' is missing" in err and str(data) in err


def test_a_missing_model_extra_stops_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # as if the openai extra were not installed
    code, printed, err = run_cli(capsys, "--out", str(tmp_path / "run"), "--agent", "openai:m")
    assert code == 2 and printed == "" and err.count("\n") == 1
    assert "pip install 'pyvision-env[openai]'" in err
    assert not (tmp_path / "run").exists()  # no run.json claims the folder for a run never played


def test_a_video_env_without_pyav_stops_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # the README's core install has no video extra
    code, printed, err = run_cli(capsys, "--out", str(tmp_path / "run"), "--env", "PyVisionVideo-v0")
    assert code == 2 and printed == "" and err.count("\n") == 1
    assert "pip install 'pyvision-env[video]'" in err
    assert not (tmp_path / "run").exists()


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 20)" in text and "(default: runs/bench)" in text and "--overwrite" in text


def test_the_bench_runs_without_tqdm(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    summaries = bench(["PyVisionImage-v0"], ["no-tool"], 2, tmp_path, progress=True, plots=False, viewer=False)
    assert summaries[0].episodes == 2


def test_an_agent_keeps_its_colour_whatever_the_order_or_the_plot():
    from pyvision_agents.plots import agent_colors

    assert agent_colors(["solver", "no-tool", "solver"]) == agent_colors(["no-tool", "solver"])
    assert len(set(agent_colors(["a", "b", "c"]).values())) == 3


def test_plot_legends_sit_beside_the_axes_off_the_data(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pyvision_agents.plots import plot_accuracy_vs_visual_tokens, plot_code_cells
    from pyvision_agents.summary import summarize

    saved, savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (saved.append(self), savefig(self, *a, **k)))
    records = [{"env_id": env, "agent": agent, "end_reason": "DONE", "correct": i % 2, "turns": 2,
                "code_cells": i % 3, "visual_tokens": 3000, "wall_time": 1.0}
               for env in ("PyVisionImage-v0", "PyVisionVideo-v0") for agent in ("solver", "no-tool")
               for i in range(4)]
    summaries = [summarize(records, env, agent) for env in ("PyVisionImage-v0", "PyVisionVideo-v0")
                 for agent in ("solver", "no-tool")]
    plot_accuracy_vs_visual_tokens(summaries, tmp_path / "accuracy.png")
    plot_code_cells(records, tmp_path / "cells.png")
    assert len(saved) == 2
    for figure in saved:
        FigureCanvasAgg(figure).draw()
        axes = figure.axes[0]
        legend = axes.get_legend()
        assert len(legend.get_texts()) == 4  # one entry per (agent, env)
        assert legend.get_window_extent().x0 >= axes.get_window_extent().x1  # right of the axes
