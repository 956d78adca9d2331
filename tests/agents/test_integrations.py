"""The adapters to other RL libraries, and their runnable examples under examples/."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from pyvision_agents.integrations.messages import MessageEnv, images_of, vagen_observation
from pyvision_agents.scripted import answer_turn, code_turn

ROOT = Path(__file__).resolve().parents[2]
SHOW = "plt.imshow(np.asarray(image_clue_0)[:40, :40]); plt.show(); print('shown')"


def run_example(*args: str, env: dict | None = None, timeout: int = 300) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# ----------------------------------------------------------------------------- message-level API


def test_message_env_returns_only_the_new_messages_with_pil_images():
    env = MessageEnv("PyVisionImage-v0", difficulty="easy")
    try:
        chat = env.reset(seed=1)
        assert [m["role"] for m in chat] == ["user"] and isinstance(images_of(chat)[0], Image.Image)
        new, reward, done, info = env.step(code_turn(SHOW))
        assert [m["role"] for m in new] == ["observation"] and not done and reward == 0.0
        (figure,) = images_of(new)
        assert isinstance(figure, Image.Image) and "shown" in new[0]["content"][0]["text"]
        assert [m["role"] for m in env.messages] == ["user", "assistant", "observation"]
        step = env.step(answer_turn("A"))
        assert step.messages == [] and step.done and step.info["end_reason"] == "DONE"
        assert step.reward == step.info["reward_parts"]["total"]
    finally:
        env.close()


def test_message_env_renames_the_observation_role_and_can_keep_arrays():
    env = MessageEnv("PyVisionImage-v0", observation_role="user", image_type="array", difficulty="easy")
    try:
        env.reset(seed=0)
        new, *_ = env.step(code_turn(SHOW))
        assert new[0]["role"] == "user" and isinstance(images_of(new)[0], np.ndarray)
        seen = vagen_observation(new)
        assert seen["obs_str"].count("<image>") == len(seen["multi_modal_input"]["<image>"]) == 1
    finally:
        env.close()


def test_message_env_refuses_the_inline_chat_form_with_the_fix():
    with pytest.raises(ValueError, match="chat_form='observation'"):
        MessageEnv("PyVisionImage-v0", chat_form="inline")
    inline = MessageEnv(gym.make("PyVisionImage-v0", chat_form="inline", difficulty="easy"))
    try:
        inline.reset(seed=0)
        with pytest.raises(RuntimeError, match="chat_form='observation'"):
            inline.step(code_turn("print(1)"))
    finally:
        inline.close()


def test_message_loop_example_runs():
    printed = run_example("examples/message_loop.py", "--episodes", "2")
    assert printed.count("end DONE") == 2 and "1 image(s)" in printed


# ----------------------------------------------------------------------------- token level (verl core)


@pytest.fixture(scope="module")
def processor(tiny_qwen):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen)


class ScriptedModel:
    """Generates token ids for scripted turns: each `generate` call takes the next text."""

    def __init__(self, processor, turns, eos: bool = False):
        self.processor, self.turns, self.eos, self.calls = processor, list(turns), eos, []

    async def __call__(self, prompt_ids, images):
        self.calls.append((list(prompt_ids), list(images)))
        ids = self.processor.tokenizer(self.turns.pop(0), add_special_tokens=False)["input_ids"]
        if self.eos:
            ids = ids + [self.processor.tokenizer.eos_token_id]
        return ids, [-0.5] * len(ids)


def _image_pads(processor, ids):
    return sum(1 for t in ids if t == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>"))


def _pads_per_image(processor, images):
    merge = processor.image_processor.merge_size ** 2
    grid = processor.image_processor(images=images, return_tensors="np")["image_grid_thw"]
    return [int(np.prod(row)) // merge for row in grid]


@pytest.mark.parametrize("eos", [False, True])
def test_rollout_tokens_keeps_model_tokens_exact_and_images_aligned(processor, eos):
    from pyvision_agents.integrations.tokens import rollout_tokens

    turns = [code_turn(SHOW), answer_turn("A")]
    model = ScriptedModel(processor, turns, eos=eos)
    env = MessageEnv("PyVisionImage-v0", difficulty="easy")
    try:
        trajectory = asyncio.run(rollout_tokens(env, processor, model, max_response_tokens=4096, seed=2))
    finally:
        env.close()
    ids, mask = np.array(trajectory.response_ids), np.array(trajectory.response_mask)
    assert len(ids) == len(mask) == len(trajectory.response_logprobs)
    generated = ids[mask == 1].tolist()
    expected = sum((model_ids for model_ids in (processor.tokenizer(t, add_special_tokens=False)["input_ids"]
                                                + ([processor.tokenizer.eos_token_id] if eos else [])
                                                for t in turns)), [])
    assert generated == expected  # the policy's tokens, exactly as sampled
    assert set(np.array(trajectory.response_logprobs)[mask == 1]) == {-0.5}
    observation = processor.decode(ids[mask == 0].tolist())
    assert "<|im_start|>observation\n<interpreter>" in observation and "shown" in observation
    assert observation.count("<|im_end|>") == (1 if eos else 2)  # the turn is closed exactly once
    assert trajectory.end_reason == "DONE" and trajectory.num_turns == 2
    # Two images (the task's, the figure), each with as many placeholders as the processor expands.
    assert len(trajectory.images) == 2
    pads = _pads_per_image(processor, trajectory.images)
    assert _image_pads(processor, trajectory.prompt_ids) == pads[0]
    assert _image_pads(processor, trajectory.response_ids) == pads[1]
    second_prompt, second_images = model.calls[1]
    assert second_prompt[: len(trajectory.prompt_ids)] == trajectory.prompt_ids and len(second_images) == 2


def test_rollout_tokens_stops_at_the_token_budget_without_half_an_observation(processor):
    from pyvision_agents.integrations.tokens import rollout_tokens

    model = ScriptedModel(processor, [code_turn(SHOW)] * 5)
    first_turn = len(processor.tokenizer(code_turn(SHOW), add_special_tokens=False)["input_ids"])
    env = MessageEnv("PyVisionImage-v0", difficulty="easy")
    try:
        trajectory = asyncio.run(rollout_tokens(env, processor, model, max_response_tokens=first_turn + 5, seed=2))
    finally:
        env.close()
    assert trajectory.end_reason == "OVER_LENGTH" and trajectory.reward == 0.0
    assert trajectory.response_mask == [1] * first_turn  # the observation did not fit: left out whole
    assert len(trajectory.images) == 1


# ----------------------------------------------------------------------------- verl


@pytest.fixture
def fake_verl(monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    import fake_verl

    for name in ("verl", "verl.experimental", "verl.experimental.agent_loop",
                 "verl.experimental.agent_loop.agent_loop", "pyvision_agents.integrations.verl"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = fake_verl.install()
    yield module
    for name in ("verl", "verl.experimental", "verl.experimental.agent_loop",
                 "verl.experimental.agent_loop.agent_loop", "pyvision_agents.integrations.verl"):
        sys.modules.pop(name, None)


class FakeServer:
    """verl's `LLMServerClient.generate` signature, answering with scripted turns."""

    def __init__(self, model):
        self.model, self.requests = model, []

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs):
        self.requests.append((request_id, sampling_params, len(image_data or [])))
        ids, logprobs = await self.model(prompt_ids, image_data or [])
        return SimpleNamespace(token_ids=ids, log_probs=logprobs)


def test_verl_agent_loop_returns_agent_loop_output(processor, fake_verl):
    from pyvision_agents.integrations import verl

    import yaml

    (entry,) = yaml.safe_load((ROOT / "examples" / "verl_agent_loop.yaml").read_text())
    assert fake_verl._agent_loop_registry[entry["name"]]["_target_"] == entry["_target_"]
    server = FakeServer(ScriptedModel(processor, [code_turn(SHOW), answer_turn("A")]))
    loop = verl.PyVisionAgentLoop(server_manager=server, processor=processor,
                                  rollout_config=SimpleNamespace(response_length=4096))
    output = asyncio.run(loop.run({"temperature": 1.0}, env_id="PyVisionImage-v0", seed=3,
                                  env_kwargs={"difficulty": "easy"}, raw_prompt=[]))
    assert isinstance(output, fake_verl.AgentLoopOutput)
    assert len(output.response_ids) == len(output.response_mask) == len(output.response_logprobs)
    assert 0 in output.response_mask and output.response_mask[0] == 1
    assert len(output.multi_modal_data["images"]) == 2 and output.num_turns == 4
    assert output.extra_fields["end_reason"] == "DONE" and output.reward_score in (0.0, 1.0, 1.1)
    assert len({request for request, *_ in server.requests}) == 1  # one request id per episode
    assert [count for *_, count in server.requests] == [1, 2]


# ----------------------------------------------------------------------------- OpenRLHF


@pytest.mark.parametrize("openrlhf", ["installed", "hidden"])
def test_openrlhf_agent_instance_plays_through_the_executor(processor, tiny_qwen, tmp_path, openrlhf):
    """With OpenRLHF installed its executor drives the agent; without it (CI) the example plays
    the same reset/step dicts by hand."""
    env = {"PYVISION_PROCESSOR": str(tiny_qwen)}
    if openrlhf == "hidden":
        (tmp_path / "openrlhf").mkdir()
        (tmp_path / "openrlhf" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    printed = run_example("examples/openrlhf_agent.py", "--episodes", "2", env=env)
    lines = [line for line in printed.splitlines() if "reward" in line]
    assert len(lines) == 2 and all("tokens" in line for line in lines)


def test_openrlhf_step_dicts(processor):
    from pyvision_agents.integrations.openrlhf import agent_instance_class, dataset_rows

    (row,) = dataset_rows(processor, "PyVisionImage-v0", [4], difficulty="easy")
    assert _image_pads(processor, processor(text=[row["prompt"]], images=row["images"])["input_ids"][0]) > 0
    instance = agent_instance_class(processor, "PyVisionImage-v0", difficulty="easy")()
    try:
        from openrlhf.utils.agent import AgentInstanceBase
    except ImportError:
        AgentInstanceBase = object
    assert isinstance(instance, AgentInstanceBase)
    reset = asyncio.run(instance.reset({"observation": row["prompt"], "label": row["label"]}))
    assert reset == {"observation": row["prompt"]}
    step = asyncio.run(instance.step({"observation_text": row["prompt"], "action_text": code_turn(SHOW),
                                      "label": row["label"]}))
    assert not step["done"] and step["rewards"].item() == 0.0 and len(step["environment_images"]) == 1
    assert step["environment_feedback"].startswith("<|im_end|>\n<|im_start|>observation\n")
    assert step["environment_feedback"].endswith("<|im_start|>assistant\n")
    last = asyncio.run(instance.step({"observation_text": "", "action_text": answer_turn("A"), "label": row["label"]}))
    assert last["done"] and last["environment_feedback"] == ""
    assert last["rewards"].item() == last["scores"].item() >= 0.0
    wrong = json.dumps({**json.loads(row["label"]), "task_id": "not/this"})
    with pytest.raises(ValueError, match="not the env's task"):
        asyncio.run(instance.reset({"observation": row["prompt"], "label": wrong}))


# ----------------------------------------------------------------------------- TRL


def test_trl_tool_env_tools_reward_and_template(processor):
    from transformers.utils import get_json_schema

    from pyvision_agents.integrations.trl import PyVisionToolEnv, dataset_rows, tool_chat_template

    (row,) = dataset_rows("PyVisionImage-v0", [5], difficulty="easy")
    env = PyVisionToolEnv("PyVisionImage-v0", difficulty="easy")
    assert get_json_schema(env.python)["function"]["parameters"]["required"] == ["code"]
    assert get_json_schema(env.answer)["function"]["name"] == "answer"
    assert env.reset(**row) is None and env.get_reward() == 0.0
    result = env.python(SHOW)
    assert [part["type"] for part in result] == ["text", "image", "text"]
    assert isinstance(result[1]["image"], Image.Image)
    assert env.answer("A") == "Answer recorded."
    reward = env.get_reward()
    assert reward >= 0.0 and env.answer("B") == env.python("print(1)")[0]["text"]  # over: no second answer
    assert env.get_reward() == reward
    # TRL's template renders the call and the tool's image as the model will see them.
    chat = row["prompt"] + [
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "python", "arguments": {"code": "x=1"}}}]},
        {"role": "tool", "name": "python", "content": result},
    ]
    text = processor.apply_chat_template(chat, chat_template=tool_chat_template(), tokenize=False,
                                         tools=[env.python, env.answer])
    assert "<tool_call>" in text and '"code": "x=1"' in text and "<tool_response>" in text
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 1  # the figure in the tool result


@pytest.mark.slow
def test_trl_example_trains_a_step_with_the_env_as_environment_factory(tiny_qwen, tmp_path):
    printed = run_example("examples/trl_tool_env.py", "--model", str(tiny_qwen), "--cpu", "--steps", "1",
                          "--out", str(tmp_path / "run"), env={"TRL_EXPERIMENTAL_SILENCE": "1"}, timeout=600)
    assert "trained 1 step(s)" in printed


def test_rollout_tokens_never_plays_a_turn_cut_by_the_budget(processor):
    from pyvision_agents.integrations.tokens import rollout_tokens

    answer = answer_turn("A")
    size = len(processor.tokenizer(answer, add_special_tokens=False)["input_ids"])
    env = MessageEnv("PyVisionImage-v0", difficulty="easy")
    try:
        trajectory = asyncio.run(rollout_tokens(env, processor, ScriptedModel(processor, [answer]),
                                                max_response_tokens=size - 3, seed=2))
    finally:
        env.close()
    assert trajectory.end_reason == "OVER_LENGTH" and trajectory.reward == 0.0
    assert len(trajectory.response_ids) == size - 3 and trajectory.info["turn"] == 0  # never stepped
