"""Agents that play pyvision-env episodes, the episode runner, and the benchmark harness."""

from pyvision_agents.base import Agent, EpisodeContext
from pyvision_agents.registry import AGENTS, make_agent

__all__ = ["AGENTS", "Agent", "EpisodeContext", "make_agent"]
