# dbaasctl developer entry points. `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := postgresql mariadb-server mariadb-client unixodbc unixodbc-dev odbc-postgresql odbc-mariadb openssl \
  containerd runc containernetworking-plugins iptables mmdebstrap buildah gcc libc6-dev
STAMP := $(VENV)/.installed
# Pinned, hashed versions of every dependency: the image installs runtime.lock, `make setup` dev.lock.
LOCKS := requirements/runtime.lock requirements/dev.lock
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
  --no-header --quiet $(if $(UPGRADE),--upgrade)
# The test bed (tests/e2e/testbed) and the benchmarks are importable from the make targets.
export PYTHONPATH := $(CURDIR)/tests/e2e:$(CURDIR)
# Which pinned Kubernetes the test bed runs (tests/e2e/controlplane/build.sh): current or compat.
export DBAASCTL_KUBE_PROFILE ?= current
# The kubectl and helm built with the test bed's server come first on PATH.
export PATH := $(shell bash tests/e2e/controlplane/build.sh $(DBAASCTL_KUBE_PROFILE) --print-bin):$(PATH)

.PHONY: help setup system-packages venv lock testbed-binaries node-images lint fmt test test-compat test-unit test-e2e cluster-up cluster-down demo demo-cluster bench soak clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: system-packages venv ## install missing Debian packages (as root) and the Python environment

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing \
	      || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; }; \
	  else echo "missing Debian packages (run as root or install them): $$missing" >&2; exit 1; fi; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCKS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements/dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

lock: ## re-pin requirements/*.lock after editing pyproject.toml (UPGRADE=1: newest versions the ranges allow)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
	$(UV_COMPILE) -o requirements/runtime.lock
	$(UV_COMPILE) --extra dev --extra bench -o requirements/dev.lock

testbed-binaries: ## build (or reuse) etcd, kube-apiserver, -controller-manager, -scheduler, kubelet, kubectl, helm, promtool, toxiproxy
	bash tests/e2e/controlplane/build.sh $(DBAASCTL_KUBE_PROFILE) >/dev/null

node-images: ## build (or reuse) the operator image from the Containerfile and the node's pause image
	bash tests/e2e/node/build-images.sh >/dev/null

lint: venv ## ruff check, ruff format --check, mypy --strict src (and the shared test fakes)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict src
	$(VENV)/bin/mypy --strict tests/support

fmt: venv ## format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test-unit: venv ## unit tests only (no test bed)
	$(PY) -m pytest tests/unit -q

test-e2e: setup testbed-binaries ## end-to-end tests against the real test bed
	$(PY) -m pytest tests/e2e -q

test: setup testbed-binaries lint ## everything: lint, unit and e2e tests against the real test bed
	$(PY) -m pytest tests -q -p no:cacheprovider

# The oldest supported Kubernetes minor: CRDs/CEL, the Database lifecycle and the chart on a real node.
COMPAT_TESTS := tests/e2e/test_testbed.py tests/e2e/test_crds.py tests/e2e/test_lifecycle_postgres.py \
  tests/e2e/test_chart.py tests/e2e/test_chart_node.py
test-compat: ## the CRD, lifecycle and chart e2e tests on the oldest supported Kubernetes minor
	$(MAKE) DBAASCTL_KUBE_PROFILE=compat setup testbed-binaries
	DBAASCTL_KUBE_PROFILE=compat PATH=$$(bash tests/e2e/controlplane/build.sh compat --print-bin):$$PATH \
	  $(PY) -m pytest $(COMPAT_TESTS) -q -p no:cacheprovider -k 'not expired_projected_token'

cluster-up: setup testbed-binaries ## start a local control plane for manual use (prints KUBECONFIG)
	$(PY) -m testbed cluster-up

cluster-down: venv ## stop the control plane started by cluster-up
	$(PY) -m testbed cluster-down

demo: setup testbed-binaries ## run the operator on a local control plane + PostgreSQL and show a Secret (KEEP=1 keeps it)
	$(PY) -m testbed demo

demo-cluster: setup testbed-binaries ## the user's path on a real node: image build, helm install, a Database, its Secret (KEEP=1)
	$(PY) -m testbed demo-cluster

bench: setup testbed-binaries ## benchmarks (not part of make test; BENCH_ARGS=--quick for a smoke run); results in bench/results/
	$(PY) -m bench $(BENCH_ARGS)

soak: setup testbed-binaries ## the reliability suite at a larger scale
	DBAASCTL_SOAK=1 $(PY) -m pytest tests/e2e -q -k reliability

clean: ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info src/*.egg-info
