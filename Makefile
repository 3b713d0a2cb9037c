# The two commands of the README. Both install everything they need into ./.venv first (idempotent).
PY := .venv/bin/python
SWEEP ?= sweeps/quickstart.yaml
ARGS ?=
# pytest workers for the test targets (pytest-xdist). Each worker takes one test module at a time
# (--dist loadscope), so a module's fixtures (a sweep, a tracking server) are built once. 2 fits the
# 2-core CI machine (most of the suite waits on Ray and subprocesses); JOBS=0 runs in one process.
JOBS ?= 2

.PHONY: install quickstart test test-fast ui bench clean

install:
	@bash scripts/bootstrap.sh

## quickstart: install, then run the quickstart sweep (LaMo vs DT on Reacher2d) and its analysis
quickstart: install
	.venv/bin/lamo-sweep $(SWEEP) $(ARGS)

## test: install, then run the whole test suite (what CI runs): in parallel, then the `serial` tests alone
test: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadscope -m "not serial" $(ARGS)
	$(PY) -m pytest -q -m serial $(ARGS) || [ $$? -eq 5 ]  # 5: ARGS selected no serial test

## test-fast: install, then run the inner-loop tier: every test not marked `slow` (no Ray sweeps, no
## tracking server, no long training)
test-fast: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadscope -m "not slow and not serial" $(ARGS)

## ui: browse the quickstart's MLflow store at http://127.0.0.1:5000
ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/lamo_runs/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

## bench: trainer steps/s, evaluation episodes/s, time to first training step (results: docs/benchmarks.md)
bench: install
	$(PY) benchmarks/bench_trainer.py $(ARGS)

clean:
	rm -rf lamo_runs
