#!/usr/bin/env bash
# Get the Docker sandbox backend ready for the tests: docker.io, a running dockerd, the image.
#
# Idempotent and quick when everything is in place. Never fails the build: when a step cannot
# be done it prints why and exits 0, and the Docker tests then skip with that reason.
set -uo pipefail
cd "$(dirname "$0")/.."

IMAGE="${PYVISION_SANDBOX_IMAGE:-pyvision-sandbox:bookworm-2}"
# The Python the env runs in: the image gets its numpy, Pillow, matplotlib and PyAV versions.
if [ -x .venv/bin/python ]; then HOST_PYTHON="${PYVISION_HOST_PYTHON:-$PWD/.venv/bin/python}"
else HOST_PYTHON="${PYVISION_HOST_PYTHON:-$(command -v python3)}"; fi
DOCKERD_LOG=/var/tmp/pyvision-dockerd.log

give_up() { echo "ci_docker: Docker backend not available: $*"; exit 0; }
daemon_up() { timeout 10 docker version >/dev/null 2>&1; }
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else return 1
    fi
}
missing_tools() {
    for tool in dockerd docker debootstrap; do command -v "$tool" >/dev/null || return 0; done
    return 1
}

if missing_tools; then
    echo "ci_docker: installing docker.io and debootstrap"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap \
        >/dev/null 2>&1 \
        || give_up "apt-get install docker.io debootstrap failed (no root or no package mirror)"
fi

if ! daemon_up; then
    echo "ci_docker: starting dockerd (log: $DOCKERD_LOG)"
    as_root setsid dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
    for _ in $(seq 60); do daemon_up && break; sleep 0.5; done
    daemon_up || give_up "dockerd did not start within 30 s; last lines of $DOCKERD_LOG:" \
        "$(tail -n 3 "$DOCKERD_LOG" 2>/dev/null)"
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "ci_docker: ready (daemon up, image $IMAGE present)"
    exit 0
fi
started=$SECONDS
as_root env PYVISION_HOST_PYTHON="$HOST_PYTHON" bash docker/build_image.sh "$IMAGE" \
    || give_up "building $IMAGE failed (see above)"
echo "ci_docker: ready (image $IMAGE built in $((SECONDS - started)) s)"
