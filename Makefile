# pivotrl-jax: `make demo` runs the main job end to end on CPU; `make test` runs the full suite.
PYTHON ?= python3
VENV ?= .venv
SGLANG_VENV ?= .venv-sglang
BIN := $(VENV)/bin
REQS := requirements.txt $(wildcard requirements-extra.txt requirements-nodeps.txt) setup.cfg pyproject.toml
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (one per core on the 2-core reference machine); a test
# file stays on one worker, so its module fixtures are built once.
TEST_WORKERS ?= 2

.PHONY: install demo test test-fast lint format bench paper-claims reliability sglang-env notebooks clean

install: $(VENV)/.installed

# Re-runs only when a requirements file changes; a second `make install` installs nothing.
$(VENV)/.installed: $(REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -r requirements.txt $(addprefix -r ,$(wildcard requirements-extra.txt))
	# Peers used only as test references whose metadata pins conflict with ours (verl wants an
	# older transformers); installed without their dependency resolution.
	$(BIN)/python -m pip install -q --no-deps $(addprefix -r ,$(wildcard requirements-nodeps.txt))
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . || $(BIN)/python -m pip install -q --no-deps -e .
	touch $@

demo: install
	$(BIN)/pivotrl demo --config=configs/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The real SGLang server (CPU build) used by the `sglang` test tier; idempotent.
sglang-env:
	bash launch/sglang_cpu_env.sh $(SGLANG_VENV)

test: install lint sglang-env
	PIVOTRL_SGLANG_PYTHON=$(abspath $(SGLANG_VENV))/bin/python $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --timeout=1800 --durations=40 $(PYTEST_ARGS)

# Quick local loop: skips the slow tier and the SGLang server tier.
test-fast: install
	PIVOTRL_SKIP_SGLANG=1 $(BIN)/python -m pytest -q -m "not slow and not sglang" $(PYTEST_ARGS)

# Every benchmark but paper_claims.py (an hour on 2 CPU cores: `make paper-claims`),
# reliability_load.py (`make reliability`), and the two that read a finished demo run
# (demo_tuning.py, whose grids take an hour, and ood_lead_in.py).
bench: install
	@for b in benchmarks/*.py; do case "$$b" in benchmarks/paper_claims.py|benchmarks/reliability_load.py|benchmarks/demo_tuning.py|benchmarks/ood_lead_in.py) continue;; esac; \
		echo "== $$b"; $(BIN)/python $$b || exit 1; done

# kill -9 at 10+ points per command, the SGLang server killed under training, then the load runs
# (profile 10k/30k/100k candidates, train 1000 steps, the demo's GRPO for 1000 steps; peak RSS
# must stay flat). See
# docs/reliability.md; hours on 2 CPU cores.
reliability: install sglang-env
	PIVOTRL_RELIABILITY=1 PIVOTRL_SGLANG_PYTHON=$(abspath $(SGLANG_VENV))/bin/python \
		$(BIN)/python -m pytest -q --timeout=14400 tests/reliability $(PYTEST_ARGS)
	$(BIN)/python benchmarks/reliability_load.py all
	$(BIN)/pivotrl demo --config=configs/demo.py
	$(BIN)/python benchmarks/reliability_load.py demo-train --demo runs/demo

# SFT vs PivotRL vs ablations vs end-to-end RL; writes docs/results/ (reuses `make demo`'s stages).
# PAPER_CLAIMS_JOBS runs at a time, each a process on its share of the CPUs.
PAPER_CLAIMS_JOBS ?= 2
paper-claims: install
	$(BIN)/python benchmarks/paper_claims.py --config.jobs=$(PAPER_CLAIMS_JOBS)

clean:
	rm -rf $(VENV) $(SGLANG_VENV) .pytest_cache .ruff_cache build *.egg-info
