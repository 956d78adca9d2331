"""Contract tests on every TRL internal PyVisionGRPOTrainer relies on (trl is pinned exactly).

When one of these fails after a TRL upgrade, re-read `trl/trainer/grpo_trainer.py` and adapt
`pyvision_train/trainer.py` before moving the pin.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

trl = pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
from trl import GRPOTrainer  # noqa: E402


def _source(name: str) -> str:
    return textwrap.dedent(inspect.getsource(getattr(GRPOTrainer, name)))


def _params(name: str) -> list[str]:
    return list(inspect.signature(getattr(GRPOTrainer, name)).parameters)


def test_trl_is_the_pinned_version():
    assert trl.__version__ == "1.16.0"


def test_hook_signatures():
    assert _params("_generate") == ["self", "prompts"]
    assert _params("_generate_and_score_completions") == ["self", "inputs"]
    assert _params("_generate_single_turn") == [
        "self", "prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images"]
    init = inspect.signature(GRPOTrainer.__init__).parameters
    for name in ("model", "reward_funcs", "args", "train_dataset", "eval_dataset", "processing_class",
                 "callbacks", "tools"):
        assert name in init


def test_generate_returns_the_eight_tuple():
    tree = ast.parse(_source("_generate"))
    returns = [node.value for node in ast.walk(tree) if isinstance(node, ast.Return)]
    assert len(returns) == 1 and isinstance(returns[0], ast.Tuple)
    assert [elt.id for elt in returns[0].elts] == [
        "prompt_ids", "completion_ids", "tool_mask", "completions", "logprobs", "extra_fields",
        "images", "tool_images"]


def test_score_unpacks_the_eight_tuple_from_generate():
    tree = ast.parse(_source("_generate_and_score_completions"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "self._generate"]
    assert len(calls) == 1
    assert [ast.unparse(elt) for elt in calls[0].targets[0].elts] == [
        "prompt_ids_list", "completion_ids_list", "tool_mask_list", "completions",
        "sampling_per_token_logps_list", "extra_fields", "images", "tool_images"]


def test_completion_images_reach_the_forward_pass_only_with_tools_set():
    """L2513 / L2588 of trl 1.16.0: the tool-image forward branch is gated on `self.tools`."""
    source = _source("_generate_and_score_completions")
    gate = "if self.tools and any(imgs for imgs in tool_images) and self._is_vlm:"
    assert source.count(gate) == 2
    assert "flat_images = [img for img_list in images if img_list for img in img_list]" in source
    assert 'forward_kwargs["mm_token_type_ids"] = mm_ids' in source
    # the silent drop this trainer pre-empts by checking tokens against features first
    assert 'forward_kwargs.pop("pixel_values", None)' in source


def test_generate_single_turn_builds_mm_token_type_ids_for_tool_images():
    source = _source("_generate_single_turn")
    assert "if self._is_vlm and self.tools and has_tool_images:" in source
    assert "completion_ids, logprobs" in source.splitlines()[-1]


def test_tool_mask_and_extra_fields_are_consumed():
    source = _source("_generate_and_score_completions")
    assert "loss_mask = completion_mask if tool_mask is None else completion_mask * tool_mask" in source
    assert "inp[key] = values[i]" in source  # extra fields reach reward functions per row
    assert "unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)" in source  # None reward: advantage 0
    assert "advantages = torch.nan_to_num(advantages, nan=0.0)" in source
    assert 'self._metrics[mode]' in source


def test_reward_functions_receive_extra_columns():
    source = _source("_calculate_rewards")
    assert 'keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]' in source
    assert "reward if reward is not None else torch.nan" in source


def test_prompts_repeat_each_prompt_in_a_row():
    """RepeatSampler: a group is num_generations consecutive rows (groups are split on that)."""
    source = textwrap.dedent(inspect.getsource(GRPOTrainer._get_train_sampler))
    assert "mini_repeat_count=self.num_generations" in source
