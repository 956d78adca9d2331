"""Model-side chat: reading a local model's tool calls back into replies."""

from __future__ import annotations

import pytest

from pyvision_agents.chat import ModelReply, parse_tool_call_text


def test_the_last_well_formed_python_call_wins():
    text = ('Let me look.<tool_call>{"name": "python", "arguments": {"code": "print(1)"}}</tool_call>'
            '<tool_call>{"name": "python", "arguments": "{\\"code\\": \\"print(2)\\"}"}</tool_call>')
    assert parse_tool_call_text(text) == ModelReply("Let me look.", "print(2)")


@pytest.mark.parametrize("arguments", ['[1, 2]', '"[1]"', '7', '{"code": 3}', '{"source": "x"}'],
                         ids=["list", "list-in-a-string", "number", "code-not-text", "no-code"])
def test_a_malformed_call_is_the_models_text_not_an_agent_failure(arguments):
    """A model's ill-formed call is its own turn (a malformed turn the env scores), never an
    exception that would make the episode an unscored infrastructure error."""
    text = f'<tool_call>{{"name": "python", "arguments": {arguments}}}</tool_call>'
    assert parse_tool_call_text(text) == ModelReply(text)
