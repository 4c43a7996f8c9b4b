# Two commands do all the set-up from nothing: `make index` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared/corpora
# Without internet, point the sources at the bundles: make index SIGMA_URL=../shared/corpora/sigma.bundle ...
SIGMA_URL  ?= $(INDEXER_SIGMA_URL)
LOLBAS_URL ?= $(INDEXER_LOLBAS_URL)
URL_ARGS := $(if $(SIGMA_URL),--sigma-url $(SIGMA_URL)) $(if $(LOLBAS_URL),--lolbas-url $(LOLBAS_URL))

.PHONY: index test fuzz bench clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

index: $(STAMP)
	$(BIN)/indexer refresh $(URL_ARGS); rc=$$?; [ $$rc -le 1 ] || exit $$rc
	$(BIN)/indexer stats

test: $(STAMP)
	$(BIN)/python -m pytest -q

FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) rules_cache/sources rules_cache/index rules_cache/manifests
