#!/usr/bin/env bash
# A private Docker engine (Debian's docker.io) run as a plain process: no systemd,
# no iptables rules, no docker0 bridge, nothing under /var/lib/docker.
#
#   deploy/engine.sh start [ROOT]   start it (if not running); prints DOCKER_HOST=...
#   deploy/engine.sh stop [ROOT]    stop it and wait until it has exited
#
# ROOT (default $SEQSERVE_DOCKER_ROOT, else ~/.cache/seqserve/docker) holds the
# data root, exec root, pid file, socket and log. It outlives a run on purpose:
# images and the pip cache of the builds are kept for the next one.
set -euo pipefail
cmd=${1:?usage: engine.sh start|stop [ROOT]}
root=${2:-${SEQSERVE_DOCKER_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/seqserve/docker}}
sock=$root/docker.sock
pidfile=$root/dockerd.pid

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case $cmd in
start)
  if ! running; then
    mkdir -p "$root/data" "$root/exec"
    # --iptables=false: the host's firewall stays as it is, so containers on
    # compose's bridge reach each other but not the outside (builds and the
    # trainer use the host's network instead). --bridge=none: no docker0.
    setsid dockerd --iptables=false --bridge=none \
      --data-root "$root/data" --exec-root "$root/exec" --pidfile "$pidfile" \
      -H "unix://$sock" >"$root/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 120); do
      DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 && break
      sleep 0.5
    done
    DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 \
      || { echo "dockerd did not come up; its log:" >&2; tail -n 30 "$root/dockerd.log" >&2; exit 1; }
  fi
  echo "DOCKER_HOST=unix://$sock"
  ;;
stop)
  if running; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    # dockerd stops its containers and containerd before it exits.
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then echo "dockerd $pid did not stop" >&2; exit 1; fi
  fi
  # Whatever dockerd left mounted under its root (its default network namespace
  # can stay behind): unmount, deepest first, so nothing of the engine remains.
  awk -v root="$root/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r mount; do
    umount "$mount"
  done
  ;;
*)
  echo "usage: engine.sh start|stop [ROOT]" >&2; exit 2 ;;
esac
