#!/usr/bin/env bash
# Build the Docker sandbox image offline: a debootstrap of Debian bookworm, the host's own
# library versions as wheels, then `docker import`.
#
#   bash docker/build_image.sh [IMAGE]      (root; needs debootstrap and a running Docker daemon)
#
# No image registry is needed: the root filesystem comes from Debian's package mirror (the one
# apt already uses, or $DEBIAN_MIRROR), and numpy, Pillow, matplotlib, PyAV and decord come as
# wheels of exactly the versions the host's Python has installed ($PYVISION_HOST_PYTHON, default
# python3), fetched with that Python's pip from the index it is configured with, so a cell
# renders and computes the same in both backends. The image holds nothing of this project: the
# sandbox code is copied into each container at run time (see pyvision_env/sandbox/docker.py),
# so the image never goes stale when the code changes. Bump the tag in
# pyvision_env/sandbox/docker.py (DEFAULT_IMAGE) and scripts/ci_docker.sh when this recipe or
# the host's library versions change.
set -euo pipefail

IMAGE="${1:-pyvision-sandbox:bookworm-2}"
SUITE=bookworm
PACKAGES=python3
IMAGE_PYTHON=3.11  # bookworm's python3
HOST_PYTHON="${PYVISION_HOST_PYTHON:-python3}"
LIBRARIES="numpy pillow matplotlib av decord"
APT_SOURCES=/etc/apt/sources.list.d/debian.sources
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' "$APT_SOURCES" 2>/dev/null \
    | head -n 1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# Downloaded packages and wheels are kept here, so a rebuild on the same machine fetches nothing.
CACHE="${PYVISION_DEBOOTSTRAP_CACHE:-/var/cache/pyvision-debootstrap}"
WHEELS="${PYVISION_WHEEL_CACHE:-/var/cache/pyvision-wheels}"

# name==version for each library the host has (decord is optional: PyAV decodes without it)
PINS="$("$HOST_PYTHON" - $LIBRARIES <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
pins = []
for name in sys.argv[1:]:
    try:
        pins.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        if name not in ("decord",):
            sys.exit(f"build_image: {name} is not installed in {sys.executable}; "
                     "set PYVISION_HOST_PYTHON to the Python the env runs in")
print(" ".join(pins))
EOF
)"

ROOTFS="$(mktemp -d /var/tmp/pyvision-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

echo "build_image: wheels for $PINS (python $IMAGE_PYTHON)"
mkdir -p "$WHEELS"
"$HOST_PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --python-version "$IMAGE_PYTHON" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux2010_x86_64 -d "$WHEELS" $PINS 2>&1 | grep -v '^WARNING: Location' || true

echo "build_image: debootstrap $SUITE ($PACKAGES) from $MIRROR"
mkdir -p "$CACHE"
debootstrap --variant=minbase --cache-dir="$CACHE" --include="$PACKAGES" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -n 20 "$ROOTFS.log"; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

# The pinned wheels (and their dependencies) into the image's site directory, without network.
SITE="$ROOTFS/usr/local/lib/python$IMAGE_PYTHON/dist-packages"
mkdir -p "$SITE"
"$HOST_PYTHON" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" \
    --only-binary=:all: --python-version "$IMAGE_PYTHON" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
    --no-warn-conflicts --target "$SITE" $PINS 2>&1 | grep -v '^WARNING: Location' || true
chroot "$ROOTFS" python3 -c "import numpy, PIL, matplotlib, av; print('build_image: in the image:',
    'numpy', numpy.__version__, 'Pillow', PIL.__version__, 'matplotlib', matplotlib.__version__,
    'av', av.__version__)"

# Trim what a sandbox never needs: package caches, docs, man pages.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* \
       "$SITE"/bin
# Matplotlib's font cache, built once here so a container's first figure is not slow.
chroot "$ROOTFS" env MPLCONFIGDIR=/etc/matplotlib-cache python3 -c \
    "import matplotlib; matplotlib.use('Agg'); import matplotlib.font_manager"
chmod -R a+rX "$ROOTFS"/etc/matplotlib-cache "$SITE"

echo "build_image: importing as $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV MPLCONFIGDIR=/etc/matplotlib-cache' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
echo "build_image: done: $IMAGE"
