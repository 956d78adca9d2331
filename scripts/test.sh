#!/usr/bin/env bash
# The project's test command (README, .ci/run): a venv with the dev extra, the system pieces some
# tests use — a Docker daemon with the sandbox image (built with the venv's library versions),
# headless Chromium — the docs build (strict: a broken link or docstring fails it), then pytest.
# A system piece that cannot be installed is reported and its tests skip with that reason.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install -q -e ".[dev]"
bash scripts/ci_docker.sh  # after the venv: the image gets the venv's numpy, Pillow, matplotlib
if ! command -v chromium >/dev/null; then
    echo "test: installing chromium (for the trajectory viewer's browser test)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >/dev/null 2>&1 || echo "test: chromium could not be installed; the browser test will skip"
fi
# the docs site into site/; never --quiet, which hides the warnings --strict fails on
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict
.venv/bin/python -m pytest -q "$@"
