"""The run manifest: which reruns are the same run."""

from __future__ import annotations

import pytest

from pyvision_agents.manifest import MANIFEST_FILE, RunManifest, RunMismatch, open_run


def manifest(episodes=4, seed=0, envs=("PyVisionImage-v0",), env_options=None, agents=None):
    agents = agents or {"openai:m": ("openai:m", {"temperature": 0.0, "api_key": "sk-secret"})}
    return RunManifest.describe(seed=seed, episodes=episodes,
                                env_options={e: dict(env_options or {}) for e in envs}, agents=agents)


def test_more_episodes_envs_or_agents_grow_the_same_run(tmp_path):
    open_run(tmp_path, manifest())
    bigger = manifest(episodes=9, envs=("PyVisionImage-v0", "PyVisionImageNoHint-v0"),
                      agents={"openai:m": ("openai:m", {"temperature": 0.0, "api_key": "other"}),
                              "solver": ("solver", {})})
    written = open_run(tmp_path, bigger)
    assert written.episodes == 9 and set(written.agents) == {"openai:m", "solver"}
    assert open_run(tmp_path, manifest(episodes=2)).episodes == 9  # a smaller rerun keeps the record
    assert "sk-secret" not in (tmp_path / MANIFEST_FILE).read_text()


def test_a_changed_agent_or_env_option_is_another_run(tmp_path):
    open_run(tmp_path, manifest(env_options={"max_turns": 5}))
    other = manifest(env_options={"max_turns": 6},
                     agents={"openai:m": ("openai:m", {"temperature": 0.7})})
    with pytest.raises(RunMismatch) as caught:
        open_run(tmp_path, other)
    message = str(caught.value)
    assert "env PyVisionImage-v0 options: max_turns was 5, now 6" in message
    assert "agent openai:m options: temperature was 0.0, now 0.7" in message
    assert "--overwrite" in message


def test_results_without_a_manifest_are_not_taken_for_this_run(tmp_path):
    (tmp_path / "episodes.jsonl").write_text("")
    with pytest.raises(RunMismatch, match="without a run.json"):
        open_run(tmp_path, manifest())
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_a_rerun_under_another_task_key_is_another_run(tmp_path, monkeypatch):
    """Built-in tasks come from keyed seeds: the same seeds under another key are other tasks."""
    def describe():
        return RunManifest.describe(seed=0, episodes=1, env_options={"PyVisionImage-v0": {}},
                                    agents={"solver": ("solver", {})})

    monkeypatch.setenv("PYVISION_ENV_SEED_KEY", "first")
    open_run(tmp_path, describe())
    monkeypatch.setenv("PYVISION_ENV_SEED_KEY", "second")
    with pytest.raises(RunMismatch, match="built-in task key"):
        open_run(tmp_path, describe())
