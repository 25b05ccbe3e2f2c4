# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Both cores: whole files per worker (--dist loadfile), so a module- or session-scoped fixture (the
# offline wheelhouse, a signed bundle) is built once and never raced by another worker.
# `make test PYTEST_XDIST=` runs serially.
PYTEST_XDIST ?= -n 2 --dist loadfile

.PHONY: deps helm checkov lint demo test test-app bench dist clean

deps:
	bash scripts/install-deps.sh

helm:
	bash scripts/install-helm.sh

checkov:
	bash scripts/install-checkov.sh

demo: deps
	$(PY) scripts/demo.py

# ruff and mypy (configured in pyproject.toml); `make test` runs them before pytest.
lint: deps
	$(VENV)/bin/ruff check airgap scripts bench
	$(VENV)/bin/mypy

test: deps helm checkov lint
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(PY) -m pytest --ignore=tests/app $(PYTEST_XDIST) $(PYTEST_ARGS)

# The real upstream application (torch, Haystack) offline under unshare -n, with a real Prometheus.
test-app: deps
	bash scripts/install-app-deps.sh
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(PY) -m pytest tests/app $(PYTEST_ARGS)

# Bytecode first: an installed airgap has it (pip compiles at install), a checkout run with
# PYTHONDONTWRITEBYTECODE would compile ~160 modules in every timed child.
bench: deps
	$(PY) -m compileall -q airgap
	$(PY) bench/bench.py
	$(PY) bench/noop_reload.py

# The offline wheelhouse (dist/airgap-oci-VERSION/ and .tar): airgap + every dependency for CPython
# 3.9-3.13, x86_64 and aarch64; `airgap bundle` ships it as tools/. Reproducible (scripts/dist.py).
dist: deps
	$(PY) scripts/dist.py build

clean:
	rm -rf .demo bench/work .pytest_cache .models
