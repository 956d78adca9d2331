"""Thin adapters from pyvision-env to other RL libraries' environment interfaces.

Each adapter is its own module, imported on demand (the library it serves is imported only there):

- `messages`: a message-level API, `reset() -> messages`, `step(text) -> new messages, reward,
  done, info` (the shape VAGEN-, skyrl-gym- and verifiers-style loops call);
- `tokens`: one episode as token ids with a response mask and its images (the core of `verl`
  and of any token-level trainer);
- `verl`: a verl `AgentLoopBase` subclass (needs verl);
- `openrlhf`: an OpenRLHF agent instance (`reset` / `step` dicts);
- `trl`: a TRL `environment_factory` class with native `python` and `answer` tools.

See docs/integrations.md.
"""
