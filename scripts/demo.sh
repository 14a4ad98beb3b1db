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
"$BIN/seqserve" tag "The jury said it." --all-archs --target "$TARGET"
echo
echo "== streaming: text cut anywhere, each word tagged as the model allows"
printf 'The jury said it did find that many of Atlanta\x27s practices were handled well.\n' \
  | "$BIN/seqserve" tag --stream --arch lstm --target "$TARGET"
printf 'The jury said it.\n' | "$BIN/seqserve" tag --stream --arch bilstm --target "$TARGET"
echo
echo "== translation (quick models: a smoke test of the machinery, not of quality; see README)"
"$BIN/seqserve" translate "In the beginning God created the heavens and the earth." --arch transformer --beam 4 \
  --target "$TARGET"
echo "== streamed as it is decoded"
"$BIN/seqserve" translate "In the beginning God created the heavens and the earth." --arch gru --beam 1 --stream \
  --target "$TARGET"
"$BIN/seqserve" translate "Jesus wept." --all-archs --beam 4 --target "$TARGET"
echo
echo "== the server works; run it in the foreground with: make serve"
