"""The run configuration: one dataclass per component, read from YAML, overridable with `--set a.b=v`.

TRL's own `GRPOConfig` is the `grpo:` section (any of its fields); the other sections are ours.
Errors name the field and say the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pyvision_train.filtering import FilterConfig


class ConfigError(ValueError):
    """A configuration value is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class ModelConfig:
    """The policy.

    Attributes:
        path: a local model folder (weights, processor, chat template); nothing is downloaded.
        dtype: torch dtype name the weights load in ("float32", "bfloat16", "auto": the
            checkpoint's). Trainable 16-bit weights need DeepSpeed, whose optimizer keeps fp32
            master weights: AdamW updating bf16 weights in place rounds updates of lr ~1e-6
            away for almost every weight, so `build_trainer` refuses them otherwise. For bf16
            compute on fp32 weights set `grpo.bf16: true` (TRL's default load is float32 too).
        freeze_vision_tower: train the language model only (PyVision-RL froze the vision tower).
    """

    path: str = ""
    dtype: str = "float32"
    freeze_vision_tower: bool = True

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("model.path is empty: give a local model folder "
                              "(for a CPU smoke run build one with `pyvision-train tiny-model OUT`)")


@dataclass(frozen=True)
class EnvConfig:
    """The training environment: any registered env id, with its reward settings passed through.

    Attributes:
        id: a registered gymnasium id (`pyvision-env list`), e.g. "PyVisionImage-v0".
        data_path: a PyVision data file the env draws its tasks from (None: built-in families).
        train_max_turns: the env's turn budget while training (PyVision-RL: 5).
        eval_max_turns: the turn budget in validation (PyVision-RL: 30).
        on_error: "observe" (errors are fed back) or "terminate" (ERROR_IN_ACTION ends the episode).
        tool_reward: reward per executed code cell when the answer is correct (PyVision-RL: 0.1).
        use_tool_reward: switch the tool reward off (accuracy only).
        max_rewarded_cells: cap on paid cells (None: the turn budget).
        sandbox: the env's sandbox backend ("local", "docker").
        kwargs: any other `PyVisionEnv` keyword (e.g. max_images, image_in_prompt).
    """

    id: str = "PyVisionImage-v0"
    data_path: str | None = None
    train_max_turns: int = 5
    eval_max_turns: int = 30
    on_error: str = "observe"
    tool_reward: float = 0.1
    use_tool_reward: bool = True
    max_rewarded_cells: int | None = None
    sandbox: str = "local"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import gymnasium as gym

        import pyvision_env  # noqa: F401  (registers the ids)

        if self.id not in gym.registry:
            close = difflib.get_close_matches(self.id, list(gym.registry), n=3)
            raise ConfigError(f"env.id {self.id!r} is not a registered env; did you mean {close}? "
                              "(`pyvision-env list` shows them all)")
        for name in ("train_max_turns", "eval_max_turns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"env.{name} must be >= 1, got {getattr(self, name)}")
        if self.on_error not in ("observe", "terminate"):
            raise ConfigError(f"env.on_error must be 'observe' or 'terminate', got {self.on_error!r}")
        taken = {"max_turns", "on_error", "reward", "data_path", "sandbox"} & set(self.kwargs)
        if taken:
            raise ConfigError(f"set {sorted(taken)} through the env section's own fields, not env.kwargs")
        if self.kwargs.get("chat_form", "observation") != "observation":
            raise ConfigError("the trainer needs chat_form='observation' (each observation its own "
                              "message); remove env.kwargs.chat_form")

    def env_kwargs(self, mode: str) -> dict[str, Any]:
        """Keyword arguments for `gymnasium.make` in "train" or "eval" mode."""
        from pyvision_env.rewards import RewardConfig

        reward = RewardConfig(tool_reward=self.tool_reward, use_tool_reward=self.use_tool_reward,
                              max_rewarded_cells=self.max_rewarded_cells)
        turns = self.train_max_turns if mode == "train" else self.eval_max_turns
        extra = {"data_path": self.data_path} if self.data_path else {}
        return {**self.kwargs, **extra, "max_turns": turns, "on_error": self.on_error,
                "reward": reward, "sandbox": self.sandbox}


@dataclass(frozen=True)
class DataConfig:
    """The prompts TRL iterates: (env id, seed) pairs; each seed is one task of the env. With
    `env.data_path`, the rows are the file's tasks in order instead: the last `eval_prompts` are
    held out to validate, up to `train_prompts` of the others train (each once per epoch); the
    seeds are ignored.

    Attributes:
        train_prompts: distinct training seeds (seed, seed + 1, ...), or data-file tasks.
        eval_prompts: validation seeds or data-file tasks (0: no validation set).
        seed: the first training seed.
        eval_seed: the first validation seed (kept apart from the training seeds).
    """

    train_prompts: int = 64
    eval_prompts: int = 0
    seed: int = 0
    eval_seed: int = 1_000_000

    def __post_init__(self) -> None:
        if self.train_prompts < 1:
            raise ConfigError(f"data.train_prompts must be >= 1, got {self.train_prompts}")
        if self.eval_prompts < 0:
            raise ConfigError(f"data.eval_prompts must be >= 0, got {self.eval_prompts}")
        if self.seed + self.train_prompts > self.eval_seed and self.eval_prompts:
            raise ConfigError("training and validation seeds overlap: raise data.eval_seed above "
                              f"{self.seed + self.train_prompts - 1}")


@dataclass(frozen=True)
class RolloutConfig:
    """How episodes are played.

    Attributes:
        protocol: "tags" (PyVision's `<code>` / `<answer>` tags; generation stops at `</code>`) or
            "tools" (native `python` tool calls through the chat template's tool format).
        num_workers: threads stepping envs concurrently (env.step blocks on the sandbox).
        max_context_tokens: an episode whose token sequence outgrows this ends with OVER_LENGTH.
        num_env_workers: 0 runs the envs in the trainer's process; N > 0 hosts them on up to N
            Ray actors per env id and mode (`pyvision_agents.ray_pool`, extra `ray`).
        ray_address: the Ray cluster for `num_env_workers` ("auto", "ray://HEAD_IP:10001");
            None starts or joins a local Ray instance.
    """

    protocol: str = "tags"
    num_workers: int = 8
    max_context_tokens: int = 16384
    num_env_workers: int = 0
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("tags", "tools"):
            raise ConfigError(f"rollout.protocol must be 'tags' or 'tools', got {self.protocol!r}")
        if self.num_workers < 1 or self.max_context_tokens < 1:
            raise ConfigError("rollout.num_workers and rollout.max_context_tokens must be >= 1")
        if type(self.num_env_workers) is not int or self.num_env_workers < 0:
            raise ConfigError(f"rollout.num_env_workers must be an integer >= 0 (0: local envs), "
                              f"got {self.num_env_workers!r}")
        if self.ray_address is not None:
            if not isinstance(self.ray_address, str) or not self.ray_address:
                raise ConfigError(f"rollout.ray_address must be a Ray address such as 'auto' or "
                                  f"'ray://HEAD_IP:10001', got {self.ray_address!r}")
            if not self.num_env_workers:
                raise ConfigError("rollout.ray_address is set but rollout.num_env_workers is 0 (local "
                                  "envs): set rollout.num_env_workers > 0 or remove rollout.ray_address")
        if self.num_env_workers and importlib.util.find_spec("ray") is None:
            raise ConfigError("rollout.num_env_workers > 0 needs ray: pip install 'pyvision-env[ray]', "
                              "or set rollout.num_env_workers: 0 for local envs")


@dataclass(frozen=True)
class TrainConfig:
    """A whole run. `grpo` holds `trl.GRPOConfig` fields (`output_dir` is the run's own).

    `sft`, when given, is passed as keyword arguments to `pyvision_train.sft.train_sft` before RL.
    """

    output_dir: str
    model: ModelConfig
    env: EnvConfig = field(default_factory=EnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    grpo: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] | None = None

    def grpo_config(self):
        """TRL's `GRPOConfig` for this run, checked against what the trainer needs."""
        from trl import GRPOConfig

        grpo = dict(self.grpo)
        if "output_dir" in grpo:
            raise ConfigError("set the run folder with the top-level output_dir, not grpo.output_dir")
        known = {f.name for f in dataclasses.fields(GRPOConfig)}
        for key in grpo:
            if key not in known:
                raise ConfigError(f"grpo.{key} is not a trl.GRPOConfig field; did you mean "
                                  f"{difflib.get_close_matches(key, known, n=3)}?")
        grpo.setdefault("report_to", ["tensorboard"])
        if grpo.get("use_vllm") and self.rollout.protocol == "tags":
            kwargs = dict(grpo.get("generation_kwargs") or {})
            kwargs.setdefault("stop", ["</code>"])
            kwargs.setdefault("include_stop_str_in_output", True)
            grpo["generation_kwargs"] = kwargs
        if grpo.get("use_vllm") and grpo.get("vllm_mode", "colocate") != "colocate":
            raise ConfigError("grpo.vllm_mode must be 'colocate': in server mode trl 1.16 pairs "
                              "multi-turn completions with the wrong rollout on several GPUs (trl PR #6673)")
        if grpo.get("mask_truncated_completions"):
            raise ConfigError("grpo.mask_truncated_completions must stay false: TRL counts a completion as truncated "
                              "when its last token is not an end token, which every episode ending on a code turn "
                              "is (EXCEED_MAX_TURNS, ERROR_IN_ACTION), so it would silently train none of them; "
                              "the filter's keep_end_reasons chooses which episodes train")
        _check_device(grpo)
        try:
            args = GRPOConfig(output_dir=self.output_dir, **grpo)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"grpo section: {error}") from None
        if (args.per_device_train_batch_size * args.steps_per_generation) % args.num_generations:
            raise ConfigError(
                "groups must stay whole on each device: per_device_train_batch_size * steps_per_generation "
                f"({args.per_device_train_batch_size} * {args.steps_per_generation}) must be a multiple of "
                f"num_generations ({args.num_generations})"
            )
        return args


def _check_device(grpo: dict[str, Any]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    if grpo.get("bf16", True) or not grpo.get("use_cpu", False):
        raise ConfigError("no CUDA device here: set grpo.use_cpu: true and grpo.bf16: false for a CPU run")
    if grpo.get("use_vllm"):
        raise ConfigError("grpo.use_vllm needs a CUDA device; set it to false for a CPU run")


# ---------------------------------------------------------------------- reading

_SECTIONS = {"model": ModelConfig, "env": EnvConfig, "data": DataConfig, "rollout": RolloutConfig,
             "filter": FilterConfig}


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config and apply `section.field=value` overrides (values parsed as YAML)."""
    import yaml

    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (model:, env:, grpo:, ...)")
    for override in overrides:
        apply_override(raw, override)
    return from_dict(raw)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in `raw` in place; the value is parsed as YAML (`1e-6`, `true`, `[a, b]`)."""
    import yaml

    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: write it as section.field=value, e.g. grpo.learning_rate=1e-6")
    *parents, leaf = key.strip().split(".")
    node = raw
    for name in parents:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override!r}: {name} is not a section")
    parsed = yaml.safe_load(value)
    node[leaf] = float(value) if isinstance(parsed, str) and _is_number(value) else parsed


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a `TrainConfig` from plain data, naming any unknown section or field."""
    top = {"output_dir", "grpo", "sft", *_SECTIONS}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ConfigError(f"unknown config sections {unknown}; known: {sorted(top)}")
    if not raw.get("output_dir"):
        raise ConfigError("output_dir is missing: set the run folder (checkpoints, logs, metrics.jsonl)")
    sections = {name: _section(name, cls, raw.get(name) or {}) for name, cls in _SECTIONS.items()}
    for name in ("grpo", "sft"):
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise ConfigError(f"{name} must be a mapping of fields")
    return TrainConfig(output_dir=str(raw["output_dir"]), grpo=dict(raw.get("grpo") or {}),
                       sft=raw.get("sft"), **sections)


def _section(name: str, cls: type, values: Any):
    if not isinstance(values, dict):
        raise ConfigError(f"{name} must be a mapping of fields, got {type(values).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ConfigError(f"{name}.{key} is not a field of {name}; did you mean "
                              f"{difflib.get_close_matches(key, fields, n=3)}? known: {sorted(fields)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name}: {error}") from None
