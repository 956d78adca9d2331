"""Shared fixtures for the agents tests: a tiny offline Qwen2.5-VL checkpoint."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    pytest.importorskip("torch", reason="needs torch: pip install torch torchvision")
    pytest.importorskip("transformers", reason="needs transformers: pip install 'pyvision-env[hf]'")
    pytest.importorskip("torchvision", reason="the Qwen2.5-VL processor needs torchvision")
    from pyvision_train.tiny_model import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))
