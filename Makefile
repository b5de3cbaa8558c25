# The two commands a newcomer runs: `make demo` and `make test`.
# Both create .venv on first use and install the package with its extras.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pathda-installed
DEMO   ?= demo-out

.PHONY: install demo shift test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q 'torch>=2.2,<=2.14.1' 'torchvision>=0.17,<=0.29.1'
	$(PY) -m pip install -q -e '.[dev,pipelines]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash pipelines/demo.sh $(DEMO)

# The domain-shift benchmark (configs/shift.yaml; ≈ 2 h on 2 quiet cores, see docs/benchmarks/README.md)
shift: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash pipelines/shift.sh configs/shift.yaml results/shift docs/benchmarks

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache
