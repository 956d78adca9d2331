"""GRPO with TRL's `environment_factory`: the model calls a native `python` tool and an `answer` tool.

    python examples/trl_tool_env.py --model /path/to/qwen2.5-vl --steps 1 [--cpu]

The processor gets TRL's `qwen3_vl.jinja` chat template (it renders tool calls and tool images and
works with the Qwen2.5-VL processor). The env owns the reward (`get_reward`).
"""

from __future__ import annotations

import argparse
from functools import partial

from pyvision_agents.integrations.trl import PyVisionToolEnv, dataset_rows, tool_chat_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Qwen2.5-VL checkpoint folder")
    parser.add_argument("--env", default="PyVisionImage-v0")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--out", default="runs/trl_tool_env")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU (tests)")
    parser.add_argument("--max-completion-length", type=int, default=64)
    args = parser.parse_args()

    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    processor = AutoProcessor.from_pretrained(args.model)
    processor.chat_template = tool_chat_template()
    model = AutoModelForImageTextToText.from_pretrained(args.model)
    rows = dataset_rows(args.env, range(4), difficulty="easy")
    config = GRPOConfig(
        output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=args.max_completion_length, max_tool_calling_iterations=3,
        logging_steps=1, report_to=[], save_strategy="no",
        **({"use_cpu": True, "bf16": False} if args.cpu else {}),
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[], args=config, processing_class=processor,
                          train_dataset=Dataset.from_list(rows),
                          environment_factory=partial(PyVisionToolEnv, args.env, difficulty="easy"))
    trainer.train()
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    print(f"trained {trainer.state.global_step} step(s); mean reward per step: {rewards}")


if __name__ == "__main__":
    main()
