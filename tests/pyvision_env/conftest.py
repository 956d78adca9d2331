"""Fixtures shared by the env tests: `backend`, each sandbox backend a test runs on (a module
may define its own `backend`, as test_video.py does for video decoders)."""

from __future__ import annotations

import pytest

from pyvision_env.sandbox import backend_unavailable


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request) -> str:
    """Each sandbox backend by name; one this host cannot run skips with the reason."""
    reason = backend_unavailable(request.param)
    if reason:
        pytest.skip(f"{request.param} backend unavailable: {reason}")
    return request.param
