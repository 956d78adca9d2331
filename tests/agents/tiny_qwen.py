"""The tiny offline Qwen2.5-VL builder, kept importable for the agents tests (it lives in pyvision_train)."""

from pyvision_train.tiny_model import CHAT_TEMPLATE, SPECIAL_TOKENS, build_tiny_qwen

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_qwen"]
