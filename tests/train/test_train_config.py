"""Config reading and validation: every error names the field and says the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyvision_train.config import ConfigError, TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


BASE = "output_dir: runs/x\nmodel: {path: m}\ngrpo: {use_cpu: true, bf16: false}\n"


def test_overrides_reach_every_section(tmp_path):
    config = load_config(write(tmp_path, BASE), [
        "grpo.learning_rate=1e-6", "env.train_max_turns=3", "filter.keep_end_reasons=[DONE]",
        "filter.rank_by_std=false", "env.id=PyVisionVideo-v0"])
    assert config.grpo["learning_rate"] == 1e-6
    assert config.env.train_max_turns == 3 and config.env.id == "PyVisionVideo-v0"
    assert config.filter.keep_end_reasons == ("DONE",) and config.filter.rank_by_std is False
    assert config.grpo_config().learning_rate == 1e-6


def test_env_section_passes_reward_and_turn_budgets_through(tmp_path):
    config = load_config(write(tmp_path, BASE), ["env.on_error=terminate", "env.tool_reward=0.2",
                                                 "env.eval_max_turns=30", "env.train_max_turns=5"])
    train, evaluation = config.env.env_kwargs("train"), config.env.env_kwargs("eval")
    assert (train["max_turns"], evaluation["max_turns"]) == (5, 30)
    assert train["on_error"] == "terminate" and train["reward"].tool_reward == 0.2


@pytest.mark.parametrize("override, message", [
    ("env.id=PyVisionImage-v9", "did you mean"),
    ("env.max_turn=3", "env.max_turn is not a field of env; did you mean \\['eval_max_turns', 'train_max_turns'\\]"),
    ("env.on_error=ignore", "must be 'observe' or 'terminate'"),
    ("env.kwargs={max_turns: 3}", "through the env section's own fields"),
    ("env.kwargs={chat_form: inline}", "chat_form='observation'"),
    ("rollout.protocol=tool", "must be 'tags' or 'tools'"),
    ("filter.keep_end_reasons=[DONE, SANDBOX_FAILURE]", "cannot keep \\[.SANDBOX_FAILURE.\\]"),
    ("data.train_prompts=0", "data.train_prompts must be >= 1"),
    ("model.path=", "pyvision-train tiny-model"),
    ("trainer.x=1", "unknown config sections \\['trainer'\\]"),
    ("set", "section.field=value"),
])
def test_bad_values_say_the_fix(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASE), [override])


@pytest.mark.parametrize("override, message", [
    ("grpo.learnign_rate=1", "did you mean \\['learning_rate'\\]"),
    ("grpo.output_dir=x", "top-level output_dir"),
    ("grpo.num_generations=3", "divisible by num_generations"),
    ("grpo.bf16=true", "grpo.use_cpu: true and grpo.bf16: false"),
    ("grpo.mask_truncated_completions=true", "ending on a code turn"),
])
def test_bad_grpo_fields_say_the_fix(tmp_path, override, message):
    pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
    config = load_config(write(tmp_path, BASE + "\n"), [override, "grpo.per_device_train_batch_size=4"])
    with pytest.raises(ConfigError, match=message):
        config.grpo_config()


def test_fewer_prompts_than_one_generation_batch_is_refused_before_loading_the_model(tmp_path):
    """TRL's sampler would yield no batch: the run would 'finish' after 0 steps."""
    pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
    from pyvision_train.run import build_trainer

    config = load_config(write(tmp_path, BASE), ["data.train_prompts=2", "grpo.num_generations=4",
                                                 "grpo.per_device_train_batch_size=16"])
    with pytest.raises(ConfigError, match=r"2 training prompt\(s\), fewer than one generation batch takes \(4"):
        build_trainer(config)  # model.path 'm' does not exist: the check comes first


def test_vllm_server_mode_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
    config = load_config(write(tmp_path, BASE), ["grpo.use_vllm=true", "grpo.vllm_mode=server"])
    with pytest.raises(ConfigError, match="PR #6673"):
        config.grpo_config()


def test_missing_file_and_missing_output_dir(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="output_dir is missing"):
        load_config(write(tmp_path, "model: {path: m}\n"))


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_example_configs_load(name):
    config = load_config(CONFIGS / name)
    assert isinstance(config, TrainConfig)
    assert config.env.train_max_turns >= 1


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_example_grpo_sections_are_grpo_config_fields(name):
    pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
    import dataclasses

    from trl import GRPOConfig

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(load_config(CONFIGS / name).grpo) <= fields


def test_published_settings_of_the_7b_configs():
    for name in ("pyvision-image-7b.yaml", "pyvision-video-7b.yaml"):
        config = load_config(CONFIGS / name)
        grpo = config.grpo
        assert (grpo["num_generations"], grpo["learning_rate"], grpo["beta"]) == (8, 1e-6, 0.0)
        assert grpo["per_device_train_batch_size"] * 8 * grpo["steps_per_generation"] == 64 * 8
        assert grpo["per_device_train_batch_size"] * 8 * grpo["gradient_accumulation_steps"] == 16 * 8
        assert config.model.freeze_vision_tower and config.env.train_max_turns == 5
        assert grpo["use_vllm"] and grpo["vllm_mode"] == "colocate"


def test_a_data_file_gives_task_rows_with_the_last_tasks_held_out(tmp_path):
    import json

    from PIL import Image

    from pyvision_train.run import dataset_rows

    Image.new("RGB", (32, 24), (200, 200, 200)).save(tmp_path / "gray.png")
    rows = [{"id": f"q{i}", "question": "Width?", "answer": "32", "data_source": "toy",
             "image_path": "gray.png"} for i in range(5)]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    overrides = [f"env.data_path={tmp_path / 'data.json'}", "data.eval_prompts=2"]
    train, evaluation = dataset_rows(load_config(write(tmp_path, BASE), overrides))
    assert [r["task_index"] for r in train] == [0, 1, 2]
    assert [r["task_index"] for r in evaluation] == [3, 4]
    capped, _ = dataset_rows(load_config(write(tmp_path, BASE), [*overrides, "data.train_prompts=2"]))
    assert [r["task_index"] for r in capped] == [0, 1]
    with pytest.raises(ConfigError, match="lower data.eval_prompts"):
        dataset_rows(load_config(write(tmp_path, BASE), [*overrides[:1], "data.eval_prompts=5"]))
    seeds, _ = dataset_rows(load_config(write(tmp_path, BASE), ["data.train_prompts=2", "data.seed=7"]))
    assert [(r["seed"], r["task_index"]) for r in seeds] == [(7, -1), (8, -1)]


def test_an_sft_section_runs_train_sft_first_and_grpo_starts_from_its_output(tmp_path, monkeypatch):
    import pyvision_train.run as run
    import pyvision_train.sft as sft

    calls, built = [], []

    class Stop(Exception):
        pass

    def train_sft(**kwargs):
        calls.append(kwargs)
        return tmp_path / "sft-out"

    def build_trainer(config):
        built.append(config)
        raise Stop

    monkeypatch.setattr(sft, "train_sft", train_sft)
    monkeypatch.setattr(run, "build_trainer", build_trainer)
    config = load_config(write(tmp_path, BASE + "sft: {epochs: 1, data: episodes.jsonl}\n"))
    with pytest.raises(Stop):
        run.train(config)
    assert calls == [{"epochs": 1, "data": "episodes.jsonl"}]
    assert built[0].model.path == str(tmp_path / "sft-out")
