#!/usr/bin/env bash
# Put the CPU build of torch into deploy/wheels, the trainer image's only source
# of torch (see Dockerfile.trainer). pip takes it from its find-links (here
# /opt/wheels) and never from an index, so nothing pulls the CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p wheels
if ls wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then exit 0; fi
python3 -m pip download --quiet --no-deps --no-index --only-binary=:all: -d wheels "torch==2.13.0+cpu" \
  || { echo "no CPU torch wheel in pip's find-links: put torch-2.13.0+cpu-*.whl into deploy/wheels" >&2; exit 1; }
