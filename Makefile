# The two commands of the README:
#   make reproduce   run every notebook with papermill on the embedded model, then refresh the README's results
#   make test        run the test suite
# Both create a local virtual environment in .venv on first use and install what they need.
# GPU users: `make TORCH_SPEC=torch reproduce` installs the CUDA build instead of the pinned CPU wheel.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
OPEN_CLIP_WHEEL_SPEC ?= open-clip-torch==3.3.0
NOTEBOOK_ARGS ?=

.PHONY: install test reproduce notebooks-ci readme clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" -e ".[notebooks,dev,browser]"
	touch $@

install: $(VENV)/.installed

# The open-clip-torch wheel is only read (never installed) by the tokenizer test, which rebuilds the bundled
# CLIP tokenizer from it; --no-deps keeps pip from pulling torchvision and a CUDA torch.
.cache/wheels/.fetched:
	mkdir -p .cache/wheels
	$(PY) -m pip download -q --no-deps "$(OPEN_CLIP_WHEEL_SPEC)" -d .cache/wheels \
	  || echo "WARNING: could not download $(OPEN_CLIP_WHEEL_SPEC); the tokenizer rebuild test will be skipped"
	touch $@

test: install .cache/wheels/.fetched
	OPEN_CLIP_WHEEL_DIR=.cache/wheels $(PY) -m pytest -q

reproduce: install
	$(PY) scripts/run_notebooks.py $(NOTEBOOK_ARGS)
	$(PY) scripts/update_readme_results.py

# CI: every notebook with the small parameters of notebooks/ci_parameters.yml, executed copies to build/.
notebooks-ci: install
	$(PY) scripts/run_notebooks.py --small

readme: install
	$(PY) scripts/update_readme_results.py

clean:
	rm -rf build .pytest_cache
