# The two commands of the README. Both install everything they need into ./.venv first (idempotent).
PY := .venv/bin/python
SWEEP ?= sweeps/quickstart.yaml
ARGS ?=

.PHONY: install quickstart test test-fast ui bench clean

install:
	@bash scripts/bootstrap.sh

## quickstart: install, then run the quickstart sweep (LaMo vs DT on Reacher2d) and its analysis
quickstart: install
	.venv/bin/lamo-sweep $(SWEEP) $(ARGS)

## test: install, then run the whole test suite (what CI runs)
test: install
	$(PY) -m pytest -q $(ARGS)

## test-fast: install, then run the inner-loop tier: every test not marked `slow` (no Ray sweeps, no
## tracking server, no long training)
test-fast: install
	$(PY) -m pytest -q -m "not slow" $(ARGS)

## ui: browse the quickstart's MLflow store at http://127.0.0.1:5000
ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/lamo_runs/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

## bench: trainer steps/s, evaluation episodes/s, time to first training step (results: docs/benchmarks.md)
bench: install
	$(PY) benchmarks/bench_trainer.py $(ARGS)

clean:
	rm -rf lamo_runs
