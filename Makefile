# Two commands do all the set-up from nothing: `make index` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared/corpora
# Without internet, point every source at its bundle: make index CORPORA=../shared/corpora
# (<name>.bundle for each registered source), or one at a time: make index SIGMA_URL=... LOLBAS_URL=...
# (INDEXER_<NAME>_URL in the environment works too). SIGMA_URL and LOLBAS_URL win over CORPORA.
CORPORA    ?=
SIGMA_URL  ?= $(INDEXER_SIGMA_URL)
LOLBAS_URL ?= $(INDEXER_LOLBAS_URL)
OWN_URLS    = $(if $(SIGMA_URL),sigma) $(if $(LOLBAS_URL),lolbas)
SOURCE_NAMES = $(shell $(BIN)/python -c 'from indexer.sources import SOURCES; print(*SOURCES)')
URL_ARGS    = $(if $(SIGMA_URL),--sigma-url $(SIGMA_URL)) $(if $(LOLBAS_URL),--lolbas-url $(LOLBAS_URL)) \
              $(if $(CORPORA),$(foreach s,$(filter-out $(OWN_URLS),$(SOURCE_NAMES)),--url $(s)=$(CORPORA)/$(s).bundle))

.PHONY: index test test-fast lint schemas fuzz bench clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

index: $(STAMP)
	$(BIN)/indexer refresh $(URL_ARGS); rc=$$?; [ $$rc -le 1 ] || exit $$rc
	$(BIN)/indexer stats

# The package compiled first: with PYTHONDONTWRITEBYTECODE set (as here), every `indexer` process
# the tests start would compile it again from source (0.2 s of CPU each).
test: $(STAMP)
	$(BIN)/python -m compileall -q indexer
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# No corpus build: the unit tests and the tests on small repositories written in the tests,
# the properties with 25 examples each (150 in `make test`), no fault injection, in two workers.
test-fast: $(STAMP)
	$(BIN)/python -m compileall -q indexer
	FUZZ_EXAMPLES=25 $(BIN)/python -m pytest -q -m 'not slow' -n 2 --dist loadgroup

# ruff (pyflakes, pycodestyle, bugbear; the formatter's check) and the import-linter contracts in pyproject.toml:
# the layers of the pipeline, and nothing heavy on the search path.
lint: $(STAMP)
	$(BIN)/ruff check indexer tests bench
	$(BIN)/ruff format --check indexer tests bench
	$(BIN)/lint-imports

# The exports' JSON Schemas (indexer/schemas/*.schema.json), derived from their records: run after
# changing a record (tests/test_export.py checks the shipped files equal the generated ones).
schemas: $(STAMP)
	$(BIN)/python -m indexer.schemas

FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) rules_cache/sources rules_cache/index rules_cache/manifests
