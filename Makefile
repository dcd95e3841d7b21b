# Two commands on a fresh machine:
#   make run    write a notebook from a plain-language request with the default model, then re-run
#               it top to bottom in a fresh kernel. The default model: a coder GGUF from the
#               Hugging Face hub (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ~1.1 GB, downloaded once:
#               `make run` gives the consent, NBMAGIC_ALLOW_DOWNLOAD=0 withholds it), else offline
#               the embedded SmolLM2-135M
#   make test   run the whole test suite
# Each creates .venv and installs what it needs.

VENV ?= .venv
PY := $(VENV)/bin/python
REQUEST ?= Analyze examples/sales_data.csv: the top 5 products by revenue and a monthly revenue trend plot
OUT ?= analysis.ipynb
MODEL ?=
PYTEST_ARGS ?=

.PHONY: run test lint bench

run:
	@bash scripts/bootstrap.sh run
	NBMAGIC_ALLOW_DOWNLOAD="$${NBMAGIC_ALLOW_DOWNLOAD-1}" \
	  $(PY) -m nbmagic generate "$(REQUEST)" -o "$(OUT)" --verify $(if $(MODEL),--model "$(MODEL)")

test:
	@bash scripts/bootstrap.sh test
	$(PY) -m ruff check nbmagic tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(PY) -m ruff check nbmagic tests benchmarks

bench:
	@bash scripts/bootstrap.sh test
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
