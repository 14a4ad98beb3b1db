#!/usr/bin/env bash
# The main job's last step: start the server on the exported models, call it, stop it.
set -euo pipefail
BIN=${1:-.venv/bin}
MODELS=${2:-models}
PORT=${SEQSERVE_GRPC_PORT:-50051}
LOG=$(mktemp -t seqserve-demo.XXXXXX.log)

SEQSERVE_MODEL_REPOSITORY="$MODELS" SEQSERVE_GRPC_PORT="$PORT" "$BIN/seqserve" serve >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT

TARGET="localhost:$PORT"
echo "== server log: $LOG"
"$BIN/seqserve" classify "a gripping, funny film" --target "$TARGET" --wait 60
"$BIN/seqserve" classify "a tedious, joyless mess" --arch lstm --target "$TARGET"
echo
"$BIN/seqserve" models --target "$TARGET"
echo
"$BIN/seqserve" classify "a gripping, funny film" --all-archs --target "$TARGET"
echo
echo "== the server works; run it in the foreground with: make serve"
