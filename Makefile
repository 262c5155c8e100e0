# crystalline_nb: `make demo` and `make test` each create .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: demo test sync docs readme bench clean-venv

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing torch 2.13.0 (CPU) first, then crystalline_nb[dev] into $(VENV) ..."
	@$(BIN)/pip install torch==2.13.0 > $(VENV)/pip.log 2>&1 || { tail -20 $(VENV)/pip.log; exit 1; }
	@$(BIN)/pip install -e ".[dev]" >> $(VENV)/pip.log 2>&1 || { tail -20 $(VENV)/pip.log; exit 1; }
	@touch $@

demo: $(VENV)/.installed
	$(BIN)/cllm demo

test: $(VENV)/.installed
	bash tools/check_sync.sh
	$(PY) tools/make_readme.py --check
	$(PY) -m pytest -q -p no:cacheprovider --durations=25 -n auto --maxprocesses 4 --dist loadfile tests

sync: $(VENV)/.installed
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean

readme: $(VENV)/.installed
	$(PY) tools/make_readme.py

docs: $(VENV)/.installed
	rm -rf _proc
	$(BIN)/nbdev-proc-nbs > /dev/null 2>&1 || { echo "error: nbdev-proc-nbs failed"; exit 1; }
	$(BIN)/smalldocs render _proc 2>&1 | grep -v "output-file is not read" || true
	@test -f _proc/_docs/index.html || { echo "error: docs build produced no index.html"; exit 1; }
	@echo "docs site in _proc/_docs"

bench: $(VENV)/.installed
	@for f in plot_cost panel_overhead history_speed profile_step step_ab train_throughput ingest_speed extraction generate_speed scaling kill_trials bad_inputs concurrency ddp_throughput gpu nanogpt; do \
	  echo "== bench/$$f.py --quick"; $(PY) bench/$$f.py --quick || exit 1; echo; done

clean-venv:
	rm -rf $(VENV)
