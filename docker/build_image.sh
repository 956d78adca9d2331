#!/usr/bin/env bash
# Build the Docker sandbox image offline: a debootstrap of Debian bookworm, then `docker import`.
#
#   bash docker/build_image.sh [IMAGE]      (root; needs debootstrap and a running Docker daemon)
#
# No image registry is needed: the root filesystem comes from Debian's package mirror (the one
# apt already uses, or $DEBIAN_MIRROR). The image holds Debian's python3 with numpy, Pillow,
# matplotlib and PyAV and nothing of this project: the sandbox code is bind-mounted read-only
# into each container at run time (see pyvision_env/sandbox/docker.py), so the image never goes
# stale when the code changes. Bump the tag in pyvision_env/sandbox/docker.py (DEFAULT_IMAGE)
# when this recipe changes.
set -euo pipefail

IMAGE="${1:-pyvision-sandbox:bookworm-1}"
SUITE=bookworm
PACKAGES=python3,python3-numpy,python3-pil,python3-matplotlib,python3-av
APT_SOURCES=/etc/apt/sources.list.d/debian.sources
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' "$APT_SOURCES" 2>/dev/null \
    | head -n 1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# Downloaded packages are kept here, so a rebuild on the same machine fetches nothing.
CACHE="${PYVISION_DEBOOTSTRAP_CACHE:-/var/cache/pyvision-debootstrap}"

ROOTFS="$(mktemp -d /var/tmp/pyvision-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

echo "build_image: debootstrap $SUITE ($PACKAGES) from $MIRROR"
mkdir -p "$CACHE"
debootstrap --variant=minbase --cache-dir="$CACHE" --include="$PACKAGES" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -n 20 "$ROOTFS.log"; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

# Trim what a sandbox never needs: package caches, docs, man pages.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
# Matplotlib's font cache, built once here so a container's first figure is not slow.
chroot "$ROOTFS" env MPLCONFIGDIR=/etc/matplotlib-cache python3 -c \
    "import matplotlib; matplotlib.use('Agg'); import matplotlib.font_manager"
chmod -R a+rX "$ROOTFS"/etc/matplotlib-cache

echo "build_image: importing as $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV MPLCONFIGDIR=/etc/matplotlib-cache' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
echo "build_image: done: $IMAGE"
