"""Shared fixtures for the trainer tests: a tiny offline Qwen2.5-VL and tasks whose answer is known."""

from __future__ import annotations

import pytest



@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
    pytest.importorskip("torchvision", reason="the Qwen2.5-VL processor needs torchvision")
    from pyvision_train.tiny_model import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="session")
def letter_tasks():
    """Choice tasks whose answer is always "A", each with one small image."""
    from PIL import Image

    from pyvision_env.tasks.task import Task

    return [
        Task(id=f"t{i}", question="Which letter? (A) a (B) b", answer="A", answer_type="choice",
             choices=("a", "b"), images=(Image.new("RGB", (40 + 4 * i, 32), (10 * i, 80, 160)),))
        for i in range(8)
    ]
