# The README's two commands: `make demo` (the main job) and `make test`.
# Everything installs into .venv from the project's own files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS ?= models
PROFILE ?= quick

.PHONY: setup data models serve demo test protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch pinned in pyproject resolves to the local CPU wheel; nothing pulls a CUDA build.
	$(BIN)/pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

setup: $(STAMP)

data: setup
	bash scripts/ensure-clients.sh
	$(BIN)/seqserve data fetch

models: data
	$(BIN)/seqserve train --task sentiment --profile $(PROFILE)
	$(BIN)/seqserve export --task sentiment --repository $(MODELS)

serve: setup
	SEQSERVE_MODEL_REPOSITORY=$(MODELS) $(BIN)/seqserve serve

demo: models
	bash scripts/demo.sh $(BIN) $(MODELS)

test: data
	$(BIN)/python -m pytest

protos: setup
	$(BIN)/python tools/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache
