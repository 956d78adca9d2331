"""vLLM colocate generation for the trainer (GPU only): a short run of the tiny model.

Skips with a reason where vLLM or CUDA is absent. On a GPU, this is where to see trl #6294
(VLM image tokens expanded twice by vLLM): the run raises if image tokens and features disagree.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

pytestmark = pytest.mark.gpu


def _require_gpu_and_vllm() -> None:
    torch = pytest.importorskip("torch", reason="needs torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU for vLLM colocate generation")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("needs vllm: pip install 'trl[vllm]==1.16.0'")


def test_vllm_colocate_run_of_the_tiny_model(tmp_path, tiny_model):
    _require_gpu_and_vllm()
    from pyvision_train.config import from_dict
    from pyvision_train.run import train

    config = from_dict({
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(tiny_model), "dtype": "bfloat16"},
        "env": {"id": "PyVisionImage-v0", "train_max_turns": 2},
        "data": {"train_prompts": 8},
        "rollout": {"num_workers": 4},
        "grpo": {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.2,
                 "bf16": True, "num_generations": 2, "per_device_train_batch_size": 4,
                 "max_completion_length": 32, "max_steps": 2, "logging_steps": 1,
                 "save_strategy": "no", "report_to": [], "gradient_checkpointing": False},
    })
    result = train(config)
    assert result["global_step"] == 2 and math.isfinite(result["training_loss"])
