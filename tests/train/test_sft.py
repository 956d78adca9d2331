"""SFT warm start on CPU: a tiny Qwen2.5-VL built offline, solver episodes exported by the env itself,
labels on assistant turns only, a few TRL SFTTrainer steps, a checkpoint that loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
pytest.importorskip("torchvision", reason="the Qwen2.5-VL processor needs torchvision")

import torch  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402
from trl.chat_template_utils import qwen2_5_vl_chat_template  # noqa: E402

from pyvision_agents.sft_export import export_sft  # noqa: E402
from pyvision_train.sft import (  # noqa: E402
    DONE_FILE,
    IGNORE_INDEX,
    AssistantOnlyCollator,
    load_sft_dataset,
    train_sft,
    training_chat_template,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """The tiny model with Qwen2.5-VL's own chat template (the one PyVision-RL models ship), so the
    training template comes from TRL as it would for the real model."""
    from pyvision_train.tiny_model import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"), chat_template=qwen2_5_vl_chat_template)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "sft"
    export_sft("PyVisionImage-v0", out, episodes=2, env_kwargs={"difficulty": "easy", "max_turns": 4})
    return out


def _spans(labels: torch.Tensor) -> list[tuple[int, int]]:
    """Contiguous runs of trained positions, as (start, end)."""
    spans, start = [], None
    for index, trained in enumerate((labels != IGNORE_INDEX).tolist() + [False]):
        if trained and start is None:
            start = index
        elif not trained and start is not None:
            spans.append((start, index))
            start = None
    return spans


def test_labels_cover_the_assistant_turns_and_nothing_else(tiny_model, dataset_dir):
    processor = AutoProcessor.from_pretrained(tiny_model)
    collator = AssistantOnlyCollator(processor, training_chat_template(processor))
    rows = load_sft_dataset(dataset_dir)
    batch = collator([rows[0], rows[1]])
    tokenizer = processor.tokenizer
    assert batch["pixel_values"].shape[0] > 0 and "image_grid_thw" in batch
    for index, row in enumerate(rows):
        labels, ids = batch["labels"][index], batch["input_ids"][index]
        assert torch.equal(labels[labels != IGNORE_INDEX], ids[labels != IGNORE_INDEX])
        trained = [tokenizer.decode(ids[start:end]) for start, end in _spans(labels)]
        assistant = [m["content"][0]["text"] + "<|im_end|>\n" for m in row["messages"] if m["role"] == "assistant"]
        assert trained == assistant
        image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert (ids == image_pad).sum() > 0 and not ((ids == image_pad) & (labels != IGNORE_INDEX)).any()
    padded = batch["attention_mask"] == 0
    assert (batch["labels"][padded] == IGNORE_INDEX).all()


def test_the_stock_trl_collator_rejects_the_observation_role(tiny_model, dataset_dir):
    """Why `AssistantOnlyCollator` exists: TRL's vision collator allows only system/user/assistant/tool."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor = AutoProcessor.from_pretrained(tiny_model)
    row = load_sft_dataset(dataset_dir)[0]
    with pytest.raises(ValueError, match="observation"):
        DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)([row])


def test_with_observation_role_user_the_stock_trl_collator_reads_the_export(tiny_model, tmp_path):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    out = tmp_path / "user-role"
    export_sft("PyVisionImage-v0", out, episodes=1, observation_role="user",
               env_kwargs={"difficulty": "easy", "max_turns": 4})
    processor = AutoProcessor.from_pretrained(tiny_model)
    collator = DataCollatorForVisionLanguageModeling(
        processor, assistant_only_loss=True, chat_template=training_chat_template(processor))
    row = load_sft_dataset(out)[0]
    batch = collator([row])
    ids = batch["input_ids"][0]
    trained = [processor.tokenizer.decode(ids[start:end]) for start, end in _spans(batch["labels"][0])]
    assert trained == [m["content"][0]["text"] + "<|im_end|>\n" for m in row["messages"] if m["role"] == "assistant"]


def test_sft_steps_lower_the_loss_and_the_checkpoint_loads(tiny_model, dataset_dir, tmp_path):
    out = train_sft(tiny_model, dataset_dir, tmp_path / "sft", max_steps=4, batch_size=2,
                    learning_rate=2e-3, trainer_args={"disable_tqdm": True})
    losses = json.loads((out / DONE_FILE).read_text())["losses"]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]  # two rows, batch of two: the same batch every step

    before = AutoModelForImageTextToText.from_pretrained(tiny_model)
    after = AutoModelForImageTextToText.from_pretrained(out)
    changed = [name for name, p in after.named_parameters()
               if not torch.equal(p, before.get_parameter(name))]
    assert changed and any("language_model" in name or "lm_head" in name for name in changed)
    processor = AutoProcessor.from_pretrained(out)
    assert processor.chat_template == qwen2_5_vl_chat_template  # the inference template, not the training one
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    generated = after.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3

    stamp = (out / DONE_FILE).stat().st_mtime_ns
    assert train_sft(tiny_model, dataset_dir, out, max_steps=4) == out  # finished: not trained again
    assert (out / DONE_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="another output_dir"):
        train_sft(tiny_model, tmp_path / "other-data", out)


def test_a_template_without_generation_markers_is_refused_with_the_fix(tiny_model, tmp_path):
    processor = AutoProcessor.from_pretrained(tiny_model)
    processor.chat_template = "{% for m in messages %}{{ m.role }}{% endfor %}"  # unknown to TRL, no markers
    with pytest.raises(ValueError, match="generation"):
        training_chat_template(processor)
    marked = "{% for m in messages %}{% generation %}{{ m.role }}{% endgeneration %}{% endfor %}"
    (tmp_path / "t.jinja").write_text(marked)
    assert training_chat_template(processor, tmp_path / "t.jinja") == marked


def test_a_folder_that_is_not_an_export_is_refused(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="export-sft"):
        train_sft(tiny_model, tmp_path, tmp_path / "out")


def test_a_killed_sft_run_resumes_from_its_last_checkpoint(tiny_model, dataset_dir, tmp_path):
    settings = {"batch_size": 2,
                "trainer_args": {"disable_tqdm": True, "save_strategy": "steps", "save_steps": 2}}
    out = train_sft(tiny_model, dataset_dir, tmp_path / "sft", max_steps=2, learning_rate=1e-3, **settings)
    first = json.loads((out / DONE_FILE).read_text())["losses"]
    (out / DONE_FILE).unlink()  # as if killed after checkpoint-2, before the stage finished
    assert (out / "checkpoint-2").is_dir()
    # A different learning rate would change step 2's loss if the run started over.
    train_sft(tiny_model, dataset_dir, out, max_steps=4, learning_rate=2e-2, **settings)
    done = json.loads((out / DONE_FILE).read_text())
    assert done["steps"] == 4 and len(done["losses"]) == 4 and done["losses"][:2] == first
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_a_resumed_sft_run_ends_with_the_weights_of_an_uninterrupted_one(tiny_model, dataset_dir, tmp_path):
    """transformers' Trainer resumed a Qwen2.5-VL from its start weights (transformers#43701)."""
    from safetensors.torch import load_file

    settings = {"batch_size": 2, "learning_rate": 2e-2,  # a constant lr: the schedule must not depend on max_steps
                "trainer_args": {"disable_tqdm": True, "save_strategy": "steps", "save_steps": 2,
                                 "lr_scheduler_type": "constant"}}
    whole = train_sft(tiny_model, dataset_dir, tmp_path / "whole", max_steps=4, **settings)
    cut = train_sft(tiny_model, dataset_dir, tmp_path / "cut", max_steps=2, **settings)
    (cut / DONE_FILE).unlink()  # as if killed after checkpoint-2
    train_sft(tiny_model, dataset_dir, cut, max_steps=4, **settings)
    expected, got = load_file(whole / "model.safetensors"), load_file(cut / "model.safetensors")
    assert expected.keys() == got.keys()
    assert not torch.equal(expected["lm_head.weight"], load_file(tiny_model / "model.safetensors")["lm_head.weight"])
    assert [k for k in expected if not torch.allclose(expected[k], got[k], atol=1e-6)] == []
    losses = [json.loads((folder / DONE_FILE).read_text())["losses"] for folder in (whole, cut)]
    assert losses[0] == pytest.approx(losses[1])
