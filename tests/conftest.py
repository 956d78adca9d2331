"""Test-session setup: generated video clips and the installation key go to per-session folders, not the user's."""

from __future__ import annotations

import pytest

from pyvision_env.tasks.keys import KEY_FILE_ENV
from pyvision_env.tasks.video_families import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def _video_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("pyvision_cache")))
        patch.setenv(KEY_FILE_ENV, str(tmp_path_factory.mktemp("pyvision_config") / "installation.key"))
        yield
