# Quick start: `make run` (the pipeline) and `make test` (the suite). Both create the virtual
# environment on first use, so each works alone on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY ?= true
export DVC_NO_ANALYTICS ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: run test test-quick lint venv ui clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision first and pinned: the CPU machines serve these builds from local disk.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: unit tests only (no Ray/MLflow/DVC processes, no minutes-long training).
test-quick: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check ganmodel pipelines tests benchmarks

ui: $(STAMP)
	@$(BIN)/python -c "from ganmodel.config import load_params; from ganmodel.tracking.store import experiment_url; \
		print('the pipeline runs, once the UI is up: ' + experiment_url(load_params().tracking.experiment))"
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlruns/mlflow.db" --host 127.0.0.1 --port 5000

clean:
	rm -rf checkpoints dvc_plots .pytest_cache
