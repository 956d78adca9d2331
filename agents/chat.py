"""Model-side chat: env messages to a backend's messages (tag or tool protocol), replies to actions."""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

from pyvision_agents.scripted import answer_turn, code_turn
from pyvision_env.protocol import extract_boxed, extract_code, parse_turn, parts_to_text

ProtocolName = Literal["tags", "tools"]
PROTOCOLS: tuple[str, ...] = ("tags", "tools")
CODE_STOP = "</code>"  # the PyVision tag protocol stops generation after a code cell
TOOL_NAME = "python"

PYTHON_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Run Python code in the persistent notebook that holds the task's media "
            "(image_clue_0, ... as PIL images; video_clue_0, ... as video readers). Print what "
            "you want to read; call plt.show() to see a figure."
        ),
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "the Python code to run"}},
            "required": ["code"],
        },
    },
}

_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ModelReply:
    """What a model returned for one episode.

    Attributes:
        text: the generated text (without any native tool call).
        tool_code: the `code` argument of a native `python` tool call, or None.
    """

    text: str
    tool_code: str | None = None


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def stop_strings(protocol: str) -> list[str]:
    """Where generation stops: after `</code>` for the tag protocol, nowhere special for tools."""
    return [CODE_STOP] if protocol == "tags" else []


def continues_final(messages: Sequence[dict[str, Any]]) -> bool:
    """True when the model must continue the last (assistant) message: the env's inline chat form."""
    return bool(messages) and messages[-1]["role"] == "assistant"


# ---------------------------------------------------------------------- env messages -> model

def to_model_messages(messages: Sequence[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    """The episode's chat for the model, images still as arrays.

    Tag protocol: the env's messages as they are (roles user / assistant / observation).
    Tool protocol: each assistant code turn becomes an assistant message with a `python` tool
    call, and the observation after it a `tool` message answering that call; an observation after
    a turn without code (a format error) becomes a `user` message.
    """
    check_protocol(protocol)
    if protocol == "tags":
        return [{"role": m["role"], "content": list(m["content"])} for m in messages]
    out: list[dict[str, Any]] = []
    pending: str | None = None
    for message in messages:
        role, content = message["role"], list(message["content"])
        if role == "assistant":
            if any(part["type"] != "text" for part in content) or len(content) > 1:
                raise ValueError(
                    "the tools protocol needs the env's chat_form='observation' (each observation "
                    "its own message); this chat has observations inside assistant messages"
                )
            out.append(_tool_call_message(parts_to_text(content), call_id=f"call_{len(out)}"))
            pending = out[-1]["tool_calls"][0]["id"] if out[-1].get("tool_calls") else None
        elif role == "observation":
            out.append({"role": "tool", "tool_call_id": pending, "content": content} if pending
                       else {"role": "user", "content": content})
            pending = None
        else:
            out.append({"role": role, "content": content})
    return out


def _tool_call_message(text: str, call_id: str) -> dict[str, Any]:
    code = extract_code(text) if parse_turn(text).kind == "code" else None
    if code is None:
        return {"role": "assistant", "content": [{"type": "text", "text": text}]}
    before = text[: text.rfind("<code>")].strip() if "<code>" in text else ""
    call = {"id": call_id, "type": "function",
            "function": {"name": TOOL_NAME, "arguments": json.dumps({"code": code})}}
    return {"role": "assistant", "content": [{"type": "text", "text": before}], "tool_calls": [call]}


def openai_messages(
    messages: Sequence[dict[str, Any]], observation_role: str = "observation",
    image_url: Callable[[np.ndarray], str] | None = None,
) -> list[dict[str, Any]]:
    """OpenAI chat format: images as URLs (`image_url(array)`, default `data_url`); `tool`
    messages as text, their images after.

    `observation_role` renames the env's `observation` role (hosted APIs accept only the standard
    roles: use "user" there; vLLM and SGLang servers pass any role to the chat template).
    """
    image_url = image_url or data_url
    out: list[dict[str, Any]] = []
    for message in messages:
        role = observation_role if message["role"] == "observation" else message["role"]
        parts = [_openai_part(part, image_url) for part in message["content"]]
        if role == "tool":
            texts = [p["text"] for p in parts if p["type"] == "text"]
            images = [p for p in parts if p["type"] != "text"]
            out.append({"role": "tool", "tool_call_id": message["tool_call_id"],
                        "content": "".join(texts)})
            if images:
                out.append({"role": "user", "content": images})
            continue
        converted: dict[str, Any] = {"role": role, "content": parts}
        if message.get("tool_calls"):
            converted["content"] = "".join(p["text"] for p in parts if p["type"] == "text") or None
            converted["tool_calls"] = message["tool_calls"]
        out.append(converted)
    return out


def hf_messages(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """transformers chat-template format: `{"type": "image"}` placeholders, and the images in order.

    Tool-call arguments become dicts, as Qwen-style templates expect.
    """
    out, images = [], []
    for message in messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                images.append(part["image"])
                content.append({"type": "image"})
            else:
                content.append({"type": "text", "text": part["text"]})
        converted = {**message, "content": content}
        if message.get("tool_calls"):
            converted["tool_calls"] = [
                {**call, "function": {**call["function"],
                                      "arguments": json.loads(call["function"]["arguments"])}}
                for call in message["tool_calls"]
            ]
        out.append(converted)
    return out, images


def _openai_part(part: dict[str, Any], image_url: Callable[[np.ndarray], str]) -> dict[str, Any]:
    if part["type"] == "image":
        return {"type": "image_url", "image_url": {"url": image_url(part["image"])}}
    return {"type": "text", "text": part["text"]}


def data_url(image: np.ndarray) -> str:
    """`data:image/png;base64,...` for an RGB uint8 array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------- model -> env action

def trim_after_stop(text: str, stops: Sequence[str]) -> str:
    """Cut `text` just after the first stop string it contains (local models overshoot a little)."""
    ends = [text.find(stop) + len(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text


def parse_tool_call_text(text: str) -> ModelReply:
    """Read a Hermes/Qwen-style `<tool_call>{"name": "python", "arguments": {...}}</tool_call>`.

    For local models (transformers, offline vLLM), whose tool calls arrive as text. The last
    well-formed `python` call wins; the text before the first call is kept as the reply text.
    """
    code = None
    for body in _TOOL_CALL_RE.findall(text):
        try:
            call = json.loads(body)
            arguments = call.get("arguments", {})
            if isinstance(arguments, str):
                arguments = json.loads(arguments)
        except (ValueError, AttributeError):
            continue
        if not isinstance(arguments, dict) or call.get("name") != TOOL_NAME:
            continue  # ill-formed: the model's text stands as its turn
        if isinstance(arguments.get("code"), str):
            code = arguments["code"]
    if code is None:
        return ModelReply(text)
    return ModelReply(text[: text.find("<tool_call>")].strip(), code)


def reply_to_action(reply: ModelReply, protocol: str) -> str:
    """The env action (PyVision tag text) for a model reply.

    Tags: the text, with `</code>` restored when the backend dropped its stop string.
    Tools: a tool call becomes a `<code>` cell; a reply without one is the final answer (a bare
    `\\boxed{}` is wrapped in `<answer>` tags).
    """
    if protocol == "tags":
        text = reply.text
        if text.rfind("<code>") > text.rfind(CODE_STOP):
            text += CODE_STOP
        return text
    if reply.tool_code is not None:
        prefix = f"{reply.text.strip()}\n" if reply.text.strip() else ""
        return prefix + code_turn(reply.tool_code)
    if parse_turn(reply.text).kind == "none":
        boxed = extract_boxed(reply.text)
        if boxed is not None:
            return f"{reply.text}\n{answer_turn(boxed)}"
    return reply.text
