"""The message-level API in a loop, as VAGEN-, skyrl-gym- or verifiers-style trainers drive an env.

A scripted policy stands in for the model: it shows a crop of the first image, then answers.

    python examples/message_loop.py --env PyVisionImage-v0 --episodes 3
"""

from __future__ import annotations

import argparse

from pyvision_agents.integrations.messages import MessageEnv, vagen_observation
from pyvision_agents.scripted import answer_turn, code_turn

LOOK = "w, h = image_clue_0.size\nprint(w, h)\nplt.imshow(image_clue_0.crop((0, 0, w // 2, h // 2)))\nplt.show()"


def policy(chat: list[dict]) -> str:
    """The model: given the chat so far, the next turn's text."""
    if len(chat) == 1:
        return code_turn(LOOK)
    return answer_turn("A")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="PyVisionImage-v0")
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args()
    env = MessageEnv(args.env, difficulty="easy")
    try:
        for seed in range(args.episodes):
            chat = env.reset(seed=seed)
            done = False
            while not done:
                action = policy(chat)
                new, reward, done, info = env.step(action)
                chat = chat + [{"role": "assistant", "content": [{"type": "text", "text": action}]}] + new
                if new:
                    seen = vagen_observation(new)
                    print(f"  observation: {seen['obs_str'].strip()!r} + "
                          f"{len(seen['multi_modal_input']['<image>'])} image(s)")
            print(f"episode {seed}: task {info['task_id']} reward {reward:.2f} end {info['end_reason']} "
                  f"messages {len(chat)}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
