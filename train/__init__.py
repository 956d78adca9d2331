"""pyvision_train: GRPO on TRL against any registered pyvision env (multi-turn, images from code).

Heavy dependencies (torch, transformers, trl) are imported by the modules that need them, never here.
"""
