"""An OpenRLHF agent file for pyvision-env: `--agent_func_path examples/openrlhf_agent.py`.

OpenRLHF imports this file and builds `AgentInstance()` per prompt. Set PYVISION_PROCESSOR to
the model's folder (its processor renders the observations) and PYVISION_ENV to an env id; make
the prompts with `pyvision_agents.integrations.openrlhf.dataset_rows` (run OpenRLHF without
`--apply_chat_template`).

Run directly, it plays episodes through OpenRLHF's own `MultiTurnAgentExecutor` (when OpenRLHF
is installed, else by calling `reset` / `step` as that executor does), with a scripted engine
standing in for vLLM:

    PYVISION_PROCESSOR=/path/to/model python examples/openrlhf_agent.py --episodes 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
from types import SimpleNamespace

from transformers import AutoProcessor

from pyvision_agents.integrations.openrlhf import agent_instance_class, dataset_rows
from pyvision_agents.scripted import answer_turn, code_turn

ENV_ID = os.environ.get("PYVISION_ENV", "PyVisionImage-v0")
PROCESSOR = AutoProcessor.from_pretrained(os.environ["PYVISION_PROCESSOR"])
AgentInstance = agent_instance_class(PROCESSOR, ENV_ID, difficulty="easy")


class ScriptedEngine:
    """Stands in for OpenRLHF's vLLM engine: a code cell first, then an answer."""

    async def generate(self, prompt_ids, sampling_params, multi_modal_data=None):
        text = answer_turn("A") if "<interpreter>" in PROCESSOR.decode(prompt_ids) else code_turn(
            "print(image_clue_0.size)")
        ids = PROCESSOR.tokenizer(text, add_special_tokens=False)["input_ids"]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop",
                                                        logprobs=None)])


async def play(row: dict) -> dict:
    try:
        from openrlhf.utils.agent import MultiTurnAgentExecutor
    except ImportError:
        return await _play_by_hand(row)
    executor = MultiTurnAgentExecutor(AgentInstance)
    params = SimpleNamespace(max_tokens=None, logprobs=None)
    return await executor.execute(row["prompt"], row["label"], params, 4096, PROCESSOR, ScriptedEngine(),
                                  images=row["images"])


async def _play_by_hand(row: dict) -> dict:
    agent = AgentInstance()
    text = (await agent.reset({"observation": row["prompt"], "label": row["label"]}))["observation"]
    engine, reward = ScriptedEngine(), 0.0
    while True:
        ids = list(PROCESSOR(text=[text], images=row["images"], return_tensors="pt")["input_ids"][0].tolist())
        action = (await engine.generate(ids, None)).outputs[0].text
        result = await agent.step({"observation_text": text, "action_text": action, "label": row["label"]})
        text += action + result["environment_feedback"]
        reward += result["rewards"].item()
        if result["done"]:
            return {"reward": reward, "observation_tokens": ids}


def main() -> None:
    parser = argparse.ArgumentParser(description="play pyvision-env episodes through OpenRLHF's agent API")
    parser.add_argument("--episodes", type=int, default=2)
    args = parser.parse_args()
    for row in dataset_rows(PROCESSOR, ENV_ID, range(args.episodes), difficulty="easy"):
        result = asyncio.run(play(row))
        print(f"{row['label']}: reward {result['reward']:.2f}, {len(result['observation_tokens'])} tokens")


if __name__ == "__main__":
    main()
