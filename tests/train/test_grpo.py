"""GRPO steps with a real sandbox: episodes as completions, masks, images from code, advantages.

A scripted policy stands in for sampling (the tiny random model never writes a code cell): per
group of three, one episode looks at the image by code and answers right, one looks and answers
wrong, one emits a vision placeholder token (dropped). Everything else is the real thing: the
env, its local sandbox, TRL's loss, optimizer and forward pass with the code's image.
"""

from __future__ import annotations

import math

import pytest

from pyvision_agents.scripted import answer_turn, code_turn

pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")

SHOW = code_turn("plt.imshow(image_clue_0)\nplt.show()")


def _config(tmp_path, model, tasks, filters=None, **grpo):
    from pyvision_train.config import from_dict

    return from_dict({
        "filter": filters or {},
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(model), "dtype": "float32"},
        "env": {"id": "PyVisionImage-v0", "train_max_turns": 3, "kwargs": {"tasks": tasks}},
        "data": {"train_prompts": 4, "eval_prompts": 1},
        "rollout": {"num_workers": 2},
        "grpo": {"use_cpu": True, "bf16": False, "learning_rate": 0.01, "num_generations": 3,
                 "per_device_train_batch_size": 3, "steps_per_generation": 2,
                 "gradient_accumulation_steps": 2, "per_device_eval_batch_size": 3,
                 "max_completion_length": 16, "max_steps": 2,
                 "logging_steps": 1, "save_strategy": "no", "report_to": [],
                 "gradient_checkpointing": False, **grpo},
    })


@pytest.fixture(scope="module")
def scripted(tmp_path_factory, tiny_model, letter_tasks):
    """Two GRPO steps of the scripted policy, trained once for every test in this module."""

    from pyvision_train.run import build_trainer
    from pyvision_train.rollout import TurnOutput
    from pyvision_train.trainer import PyVisionGRPOTrainer

    captured = {"tuples": [], "forward": [], "scored": []}

    class Scripted(PyVisionGRPOTrainer):
        def _generate_turns(self, requests):
            tokenizer = self.codec.tokenizer
            outputs = []
            for k, request in enumerate(requests):
                turn = tokenizer.decode(request.ids).count("<|im_start|>assistant")
                role = k % 3 if turn == 1 else k % 2  # role-2 episodes end on their first turn
                if role == 2:
                    ids = tokenizer.encode("<code>", add_special_tokens=False) + [self.codec.image_pad_id]
                elif turn == 1:
                    ids = tokenizer.encode(SHOW, add_special_tokens=False)
                else:
                    ids = tokenizer.encode(answer_turn("A" if role == 0 else "B"), add_special_tokens=False)
                    ids.append(tokenizer.eos_token_id)
                outputs.append(TurnOutput(ids))
            return outputs

        def _generate(self, prompts):
            result = super()._generate(prompts)
            captured["tuples"].append(result)
            return result

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            captured["scored"].append(output)
            return output

    trainer = build_trainer(_config(tmp_path_factory.mktemp("grpo"), tiny_model, letter_tasks), Scripted)

    def record(module, args, kwargs):
        if kwargs.get("labels") is not None:  # the training / scoring forward passes
            captured["forward"].append({k: kwargs.get(k) for k in ("input_ids", "pixel_values",
                                                                   "image_grid_thw", "mm_token_type_ids")})

    trainer.model.register_forward_pre_hook(record, with_kwargs=True)
    captured["before"] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    try:
        captured["result"] = trainer.train()
        captured["train_turns"] = trainer._runners["train"]._pool["PyVisionImage-v0"][0].unwrapped.limits.max_turns
    finally:
        trainer.close()
    return trainer, captured


def test_grpo_steps_train_on_env_episodes(scripted):
    import torch

    trainer, captured = scripted
    before, result = captured["before"], captured["result"]
    assert result.global_step == 2 and math.isfinite(result.training_loss)
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses and all(math.isfinite(loss) for loss in losses)
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert any(".language_model." in n for n in changed)
    assert not any(".visual." in n for n in changed)  # frozen vision tower

    history = [r for r in trainer.state.log_history if "pyvision/code_cells/mean" in r]
    assert history[0]["pyvision/code_cells/mean"] == pytest.approx(2 / 3)
    assert history[0]["pyvision/end_reason/INVALID_OUTPUT"] == pytest.approx(1 / 3)
    assert history[0]["pyvision/reward/tool"] == pytest.approx(0.1 / 3)  # one correct cell-user per group
    assert history[0]["pyvision/filter/trajectory_pass_rate"] == pytest.approx(2 / 3)
    _, _, tool_mask, _, _, extra, _, _ = captured["tuples"][0]
    kept_lengths = [sum(mask) for mask, kept in zip(tool_mask, extra["keep"]) if kept]
    assert history[0]["completions/mean_length"] == pytest.approx(sum(kept_lengths) / len(kept_lengths))


def test_a_resumed_run_loads_its_checkpoint_weights(scripted, tmp_path):
    """`save_pretrained` writes Qwen2.5-VL keys in the original layout; transformers' Trainer loaded
    them by name and kept the start weights (transformers#43701)."""
    import torch

    trainer, captured = scripted
    trained = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.model.save_pretrained(tmp_path)  # what a checkpoint-N folder holds
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            param.copy_(captured["before"][name])
    trainer._load_from_checkpoint(str(tmp_path))
    assert [n for n, p in trainer.model.named_parameters() if not torch.equal(p, trained[n])] == []


def test_training_moves_the_policy_toward_the_rewarded_answer(scripted):
    """The sign of the whole loop: in every group the "A" answer earned 1.1 and the "B" answer 0,
    so after training the model must give the "A" answer turn more likelihood against "B" than before."""
    import torch

    trainer, captured = scripted
    tokenizer, model = trainer.codec.tokenizer, trainer.model
    context = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)

    def log_likelihood(letter: str) -> float:
        turn = tokenizer.encode(answer_turn(letter), add_special_tokens=False) + [tokenizer.eos_token_id]
        ids = torch.tensor([context + turn])
        with torch.no_grad():
            logps = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        return float(logps[torch.arange(len(context) - 1, ids.shape[1] - 1), ids[0, len(context):]].sum())

    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    after = log_likelihood("A") - log_likelihood("B")
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(captured["before"][name])
    before = log_likelihood("A") - log_likelihood("B")
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(trained[name])
    assert after > before + 1.0, (before, after)


def test_observation_tokens_are_masked_and_code_images_reach_the_forward_pass(scripted):
    trainer, captured = scripted
    tokenizer = trainer.codec.tokenizer
    prompt_ids, completion_ids, tool_mask, _, _, extra, images, tool_images = captured["tuples"][0]
    right = 0  # the first trajectory of the first group: code, then the right answer
    ids, mask = completion_ids[right], tool_mask[right]
    model_text = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    observed = tokenizer.decode([i for i, m in zip(ids, mask) if not m], skip_special_tokens=False)
    assert model_text == SHOW + answer_turn("A") + tokenizer.eos_token
    assert "<interpreter>" in observed and "<|image_pad|>" in observed
    assert extra["env_reward"][right] == pytest.approx(1.1) and extra["keep"][:3] == [True, True, False]
    assert sum(tool_mask[2]) == 0  # the dropped trajectory trains nothing
    assert len(images[right]) == 2 and len(tool_images[right]) == 2  # prompt image + the code's figure

    forward = captured["forward"][0]
    pad = trainer.codec.image_pad_id
    assert forward["pixel_values"] is not None and forward["image_grid_thw"] is not None
    assert forward["mm_token_type_ids"] is not None
    features = int(forward["image_grid_thw"].prod(dim=-1).sum()) // trainer.codec.merge_length
    assert int((forward["input_ids"] == pad).sum()) == features
    assert forward["image_grid_thw"].shape[0] > forward["input_ids"].shape[0]  # code figures too
    # every forward pass (generation batch split into micro-batches) pairs tokens with features
    for call in captured["forward"]:
        grid = call["image_grid_thw"]
        assert int((call["input_ids"] == pad).sum()) == int(grid.prod(dim=-1).sum()) // trainer.codec.merge_length


def test_advantages_are_computed_after_filtering(scripted):
    trainer, captured = scripted
    advantages = captured["scored"][0]["advantages"].tolist()
    rewards = captured["tuples"][0][5]["env_reward"]
    for start in range(0, len(advantages), 3):
        right, wrong, dropped = advantages[start: start + 3]
        assert rewards[start: start + 3][:2] == pytest.approx([1.1, 0.0])
        assert dropped == 0.0
        assert right == pytest.approx(-wrong) and right > 0  # the dropped 0 is not in the baseline


def test_oversampled_groups_are_scored_per_trajectory(tmp_path, tiny_model, letter_tasks):
    """The drawn groups all answer wrong (tied: dropped), so the batch is filled with the oversampled
    groups, whose first episode answers right: TRL must score each of their trajectories by its own
    reward. (Rows sharing one dict once gave every row the group's last reward: zero advantage.)"""
    from pyvision_train.rollout import TurnOutput
    from pyvision_train.run import build_trainer
    from pyvision_train.trainer import PyVisionGRPOTrainer

    scored = []

    class Oversampled(PyVisionGRPOTrainer):
        def _generate_turns(self, requests):  # 12 episodes, all alive until their answer turn
            tokenizer = self.codec.tokenizer
            outputs = []
            for k, request in enumerate(requests):
                if tokenizer.decode(request.ids).count("<|im_start|>assistant") == 1:
                    outputs.append(TurnOutput(tokenizer.encode(SHOW, add_special_tokens=False)))
                    continue
                letter = "A" if k >= 6 and k % 3 == 0 else "B"
                outputs.append(TurnOutput(tokenizer.encode(answer_turn(letter), add_special_tokens=False)
                                          + [tokenizer.eos_token_id]))
            return outputs

        def _generate_and_score_completions(self, inputs):
            scored.append(super()._generate_and_score_completions(inputs))
            return scored[-1]

    filters = {"oversample": 2.0, "drop_tied_groups": True, "rank_by_std": True}
    trainer = build_trainer(_config(tmp_path, tiny_model, letter_tasks, filters, max_steps=1), Oversampled)
    try:
        trainer.train()
    finally:
        trainer.close()
    assert trainer.state.log_history[0]["pyvision/filter/group_pass_rate"] == pytest.approx(0.5)
    advantages = scored[0]["advantages"].tolist()
    assert len(advantages) == 6
    assert all(a > 0 for a in advantages[0::3]) and all(a < 0 for k, a in enumerate(advantages) if k % 3)


def test_validation_plays_with_its_own_turn_budget(scripted):
    trainer, captured = scripted
    metrics = trainer.evaluate()
    assert metrics["eval_pyvision/episodes"] == 3
    assert metrics["eval_pyvision/end_reason/INVALID_OUTPUT"] == pytest.approx(1 / 3)
    assert captured["train_turns"] == 3
    assert trainer._runners["eval"]._pool["PyVisionImage-v0"][0].unwrapped.limits.max_turns == 30
    trainer.close()


def test_hf_generation_suppresses_every_vision_token(scripted):
    trainer, _ = scripted
    assert trainer.codec.vision_ids <= set(trainer.generation_config.suppress_tokens)


def test_trainable_bf16_weights_without_deepspeed_are_refused(tmp_path, tiny_model, letter_tasks):
    """AdamW updating bf16 weights in place loses every step below half a rounding step: at the
    7B configs' lr (1e-6) almost all of them, so a run would train nothing while its loss looks fine."""
    from dataclasses import replace

    from pyvision_train.config import ConfigError
    from pyvision_train.run import build_trainer

    config = _config(tmp_path, tiny_model, letter_tasks)
    with pytest.raises(ConfigError, match=r"trainable torch.bfloat16 weights.*model.dtype: float32"):
        build_trainer(replace(config, model=replace(config.model, dtype="bfloat16")))
