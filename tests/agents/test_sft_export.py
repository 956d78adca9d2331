"""`pyvision-env export-sft`: episodes of an agent as a chat dataset with images, read back with `datasets`."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("datasets", reason="the SFT export needs datasets: pip install 'pyvision-env[train]'")

from datasets import load_from_disk  # noqa: E402

from pyvision_agents import sft_export  # noqa: E402
from pyvision_agents.base import AgentFailure  # noqa: E402
from pyvision_agents.cli import main  # noqa: E402
from pyvision_agents.registry import AGENTS  # noqa: E402
from pyvision_agents.runner import EpisodeRecord  # noqa: E402
from pyvision_agents.scripted import SolverAgent, answer_turn  # noqa: E402
from pyvision_agents.sft_export import MANIFEST_FILE, episode_row, export_sft  # noqa: E402

ENV = "PyVisionImage-v0"
EASY = {"difficulty": "easy", "max_turns": 4}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "data"
    return export_sft(ENV, out, episodes=3, env_kwargs=EASY)


def test_solver_episodes_become_chat_rows_with_images(exported):
    assert (exported.written, exported.episodes, exported.skipped_failed, exported.skipped_bad) == (3, 3, 0, 0)
    dataset = load_from_disk(str(exported.path))
    assert len(dataset) == 3 and {"messages", "images"} <= set(dataset.column_names)
    for row in dataset:
        roles = [message["role"] for message in row["messages"]]
        assert roles == ["user", "assistant", "observation", "assistant"]
        placeholders = sum(part["type"] == "image" for m in row["messages"] for part in m["content"])
        assert placeholders == len(row["images"]) >= 2  # the prompt image and the solver's figure
        assert row["images"][0].size == (2000, 1500) and row["images"][0].mode == "RGB"
        assert row["messages"][1]["content"][0]["text"].startswith("<code>")
        assert row["messages"][-1]["content"][0]["text"].startswith("<answer>")
        assert row["correct"] and row["end_reason"] == "DONE" and row["agent"] == "solver"
    manifest = json.loads((exported.path / MANIFEST_FILE).read_text())
    assert manifest["written"] == 3 and manifest["env_id"] == ENV


def test_images_round_trip_exactly(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    record = _record([{"role": "user", "content": [{"type": "image", "image": 0}, {"type": "text", "text": "q"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "a"}]}], images=(image,))
    shards = sft_export._Shards(tmp_path / "shards")
    shards.add(episode_row(record))
    sft_export._publish(shards, tmp_path / "staged", tmp_path / "d", {})
    row = load_from_disk(str(tmp_path / "d"))[0]
    assert np.array_equal(np.asarray(row["images"][0]), image)
    assert row["messages"][0]["content"][0]["type"] == "image"


class WrongAgent:
    """Answers every question at once, always wrongly."""

    name = "wrong"

    def act(self, contexts):
        return [answer_turn("not an answer to anything") for _ in contexts]


def test_incorrect_episodes_are_left_out_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setitem(AGENTS, "wrong", WrongAgent)
    with pytest.raises(ValueError, match="no episode"):
        export_sft(ENV, tmp_path / "none", agent="wrong", episodes=2, env_kwargs=EASY)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left
    monkeypatch.setattr(sft_export, "SHARD_ROWS", 2)  # rows reach disk in shards, joined at the end
    stats = export_sft(ENV, tmp_path / "all", agent="wrong", episodes=5, env_kwargs=EASY, only_correct=False)
    rows = load_from_disk(str(stats.path))
    assert (stats.written, stats.skipped_incorrect) == (5, 0) and not any(rows["correct"])
    assert sorted(rows["episode"]) == [0, 1, 2, 3, 4]
    assert [p.name for p in tmp_path.iterdir()] == ["all"]


class FlakyAgent(SolverAgent):
    """The solver, except that the episode in slot 1 gets an AgentFailure on the first call, and
    the whole agent raises after `crash_after` calls."""

    name = "flaky"

    def __init__(self, crash_after: int | None = None):
        self.calls, self.crash_after = 0, crash_after

    def act(self, contexts):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise RuntimeError("backend exploded")
        turns = super().act(contexts)
        return [AgentFailure("endpoint down") if c.slot == 1 and self.calls == 1 else turn
                for c, turn in zip(contexts, turns)]


@pytest.mark.parametrize("crash_after,written,failed", [(None, 2, 1), (2, 1, 2)])
def test_failures_are_counted_and_never_crash_the_export(tmp_path, monkeypatch, crash_after, written, failed):
    monkeypatch.setitem(AGENTS, "flaky", lambda: FlakyAgent(crash_after))
    stats = export_sft(ENV, tmp_path / "d", agent="flaky", episodes=3, num_envs=2, env_kwargs=EASY)
    assert (stats.written, stats.skipped_failed) == (written, failed)
    assert any("endpoint down" in message or "exploded" in message for message in stats.errors)
    assert len(load_from_disk(str(stats.path))) == written


def test_rows_that_cannot_be_trained_on_are_rejected():
    inline = _record([{"role": "user", "content": [{"type": "text", "text": "q"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "<code>x</code>"},
                                                        {"type": "image", "image": 0}]}],
                     images=(np.zeros((2, 2, 3), np.uint8),))
    with pytest.raises(ValueError, match="chat_form='observation'"):
        episode_row(inline)
    with pytest.raises(ValueError, match="no assistant turn"):
        episode_row(_record([{"role": "user", "content": [{"type": "text", "text": "q"}]}]))
    with pytest.raises(ValueError, match="role"):
        episode_row(_record([{"role": "narrator", "content": []}]))


def test_a_truncated_episode_loses_its_last_observation_and_its_images():
    figure = np.zeros((4, 4, 3), np.uint8)
    record = _record([{"role": "user", "content": [{"type": "image", "image": 0}, {"type": "text", "text": "q"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "<code>c</code>"}]},
                      {"role": "observation", "content": [{"type": "image", "image": 1}]}],
                     images=(figure, figure + 1))
    row = episode_row(record)
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"] and len(row["images"]) == 1


def test_observation_role_can_be_renamed():
    record = _record([{"role": "user", "content": [{"type": "text", "text": "q"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
                      {"role": "observation", "content": [{"type": "text", "text": "o"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "a"}]}])
    assert [m["role"] for m in episode_row(record, "user")["messages"]] == ["user", "assistant", "user", "assistant"]


def test_bad_arguments_and_existing_output(tmp_path, exported):
    with pytest.raises(ValueError, match="chat_form"):
        export_sft(ENV, tmp_path / "x", episodes=1, env_kwargs={"chat_form": "inline"})
    before = sorted(p.name for p in exported.path.iterdir())
    with pytest.raises(FileExistsError, match="overwrite"):
        export_sft(ENV, exported.path, episodes=1, env_kwargs=EASY)
    assert sorted(p.name for p in exported.path.iterdir()) == before


def test_a_failed_write_leaves_the_old_dataset_whole(tmp_path, monkeypatch):
    out = tmp_path / "d"
    export_sft(ENV, out, episodes=1, env_kwargs=EASY)
    import datasets

    def broken(self, path, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", broken)
    with pytest.raises(OSError, match="disk full"):
        export_sft(ENV, out, episodes=1, env_kwargs=EASY, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["d"] and len(load_from_disk(str(out))) == 1


def test_cli_export_sft(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export-sft", "--out", str(out), "--episodes", "2", "--difficulty", "easy",
                 "--env-opt", "max_turns=4"]) == 0
    assert "2 of 2 episodes written" in capsys.readouterr().out
    assert len(load_from_disk(str(out))) == 2
    assert main(["export-sft", "--out", str(out), "--episodes", "1"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export-sft", "--env", "PyVisionImag-v0", "--out", str(tmp_path / "y")]) == 2


def _record(transcript, images=()) -> EpisodeRecord:
    return EpisodeRecord(
        env_id=ENV, agent="a", episode=0, seed=0, task_id="t", task_source="s", answer_type="text",
        question="q", ground_truth="g", predicted="g", correct=True, reward=1.0,
        reward_parts={"accuracy": 1.0, "tool": 0.0, "total": 1.0}, turns=1, code_cells=0, images_shown=0,
        visual_tokens=0, end_reason="DONE", wall_time=0.0, transcript=transcript, images=tuple(images),
    )
