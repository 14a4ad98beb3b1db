#!/usr/bin/env bash
# The Debian bookworm base image, made from Debian's packages with debootstrap,
# for machines where no image registry is reachable. Every Dockerfile here builds
# FROM it when SEQSERVE_STACK_BASE_IMAGE names it.
#
#   deploy/make-base-image.sh [TAG]   (default seqserve-base:bookworm; as root)
#
# DOCKER_HOST picks the engine. An existing TAG is kept; FORCE=1 makes it again.
set -euo pipefail
tag=${1:-seqserve-base:bookworm}
if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag exists"
  exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
# The mirror is debootstrap's default unless SEQSERVE_DEBIAN_MIRROR names another.
debootstrap --variant=minbase bookworm "$rootfs" ${SEQSERVE_DEBIAN_MIRROR:-} >&2
# On a bookworm host, the image's apt uses the host's sources (mirror, updates and
# security suites), so images get the same package versions as the host.
if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
  rm -f "$rootfs/etc/apt/sources.list"
fi
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag"
