# Set-up and everyday targets; every target is idempotent and needs nothing installed by hand.
PY := .venv/bin/python
DATA ?= data/synthetic_vis
WORK_DIR ?= work_dirs/ttsrn_synthetic
QUICK_CONFIG ?= configs/ttsrn/ttsrn_synthetic.py
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: one per core of the 2-core CI machine.
PYTEST_WORKERS ?= 2

.PHONY: install lint test test-fast quickstart clean-venv

install:
	bash tools/misc/install_env.sh

# flake8, isort, codespell and trailing whitespace (.pre-commit-config.yaml);
# only checks, never rewrites a file.
lint: install
	.venv/bin/pre-commit run --all-files

# Every test, the end-to-end ones (marked `slow`) included: what CI runs.
test: install
	$(PY) -m pytest tests -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The tests not marked `slow` (setup.cfg): for a quick check while editing.
test-fast: install
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

quickstart: install
	bash tools/misc/quickstart.sh $(QUICK_CONFIG) $(DATA) $(WORK_DIR)

clean-venv:
	rm -rf .venv
