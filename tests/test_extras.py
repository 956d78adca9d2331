"""The optional-dependency extras in pyproject.toml: who installs what."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")

PROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]


def closure(extra: str) -> set[str]:
    """Distribution names an extra installs, self-references (pyvision-env[...]) followed."""
    names = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        if name == PROJECT["name"]:
            for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                names |= closure(inner.strip())
        else:
            names.add(name)
    return names


def core() -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in PROJECT["dependencies"]}


def test_an_openai_endpoint_user_installs_no_torch():
    assert "openai" in closure("openai")
    assert not closure("openai") & {"torch", "torchvision", "transformers"}


def test_the_agents_extra_still_installs_every_backend():
    assert {"openai", "transformers", "torch", "torchvision", "av"} <= closure("agents")


def test_tqdm_is_not_a_core_dependency_but_dev_has_it():
    assert "tqdm" not in core()
    assert {"tqdm", "openai", "torch", "transformers", "pytest"} <= closure("dev")
