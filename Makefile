# Everyday commands. `make help` lists them. Python tools run from .venv, which `make install` builds
# from the hash-pinned locks (tests/requirements.txt includes the runtime pins of requirements.txt).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Never let google-auth probe the cloud metadata server from a developer machine or CI.
export NO_GCE_CHECK ?= True
export GCE_METADATA_HOST ?= 127.0.0.1:9
export GCE_METADATA_IP ?= 127.0.0.1:9

.PHONY: help install lock lint audit test mutate run demo bench soak reliability cluster-up cluster-down kubeconfig clean

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r tests/requirements.txt
	touch $@

install: $(STAMP) ## Create .venv with the pinned runtime and dev dependencies

lock: $(STAMP) ## Re-pin requirements.txt (Python 3.12 runtime) and tests/requirements.txt, with hashes
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.12 --generate-hashes --no-header --quiet \
	  --upgrade -o requirements.txt
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev -c requirements.txt --python-version 3.11 \
	  --generate-hashes --quiet --upgrade --custom-compile-command "make lock" -o tests/requirements.txt

lint: $(STAMP) ## ruff, mypy --strict, terraform fmt/validate/test (plan with mocked providers) and checkov
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	infra/scripts/check.sh

audit: $(STAMP) ## Known vulnerabilities in both locks (pip-audit; exceptions with reasons in devkit/audit_exceptions.json)
	$(PY) -m devkit.audit

test: $(STAMP) ## Build (or reuse) kube-apiserver and etcd, then run every test tier
	$(PY) -m devkit.binaries build
	$(VENV)/bin/pytest

mutate: $(STAMP) ## Mutation testing (mutmut) of the pure core against the unit tier: .cache/mutation/report.md
	timeout 900 $(PY) -m devkit.mutation

run: $(STAMP) ## Serve the function on 127.0.0.1:8080 (HOST, PORT) with .env; reloads on code change, no debugger
	$(PY) -m devkit.run_local --env-file .env

demo: $(STAMP) ## End to end on this machine: control plane, Crusoe emulator, two rotations, a report
	$(PY) -m devkit.binaries build
	PYTHONPATH=function $(PY) -m devkit.demo

bench: $(STAMP) ## Rotation cost at 10, 100 and 1,000 namespaces against the baseline (bench/results)
	$(PY) -m devkit.binaries build
	$(PY) -m bench

# Sizes of the soak: make soak SOAK_NAMESPACES=20 SOAK_ROTATIONS=400 for the large run.
SOAK_NAMESPACES ?= 3
SOAK_ROTATIONS ?= 12
soak: $(STAMP) ## Many rotations (overlaps, retries, faults) while a checker samples every pull secret's token
	$(PY) -m devkit.binaries build
	PYTHONPATH=function $(PY) -m devkit.soak --namespaces $(SOAK_NAMESPACES) --rotations $(SOAK_ROTATIONS) \
	  --max-seconds 1800

reliability: $(STAMP) ## Fault scenarios, bad inputs and a soak -> docs/reliability.md (table: expected/observed)
	$(PY) -m devkit.binaries build
	PYTHONPATH=function timeout 3600 $(PY) -m devkit.reliability

cluster-up: $(STAMP) ## Start etcd + kube-apiserver on loopback; admin kubeconfig in .cache/cluster/
	$(PY) -m devkit.binaries build
	$(PY) -m devkit.cluster up

cluster-down: $(STAMP) ## Stop the local control plane and remove its data
	$(PY) -m devkit.cluster down

# Arguments come from make variables; without SECRET it stops with the usage before touching anything.
KUBECONFIG_USAGE := usage: make kubeconfig SECRET=<kubeconfig_secret_id output, projects/P/secrets/S> \
  [NAMESPACE=crusoe-system] [SERVICE_ACCOUNT=ccr-pull-secret-rotator] [DURATION=2160h] [CONTEXT=admin-context] \
  [SERVER=https://api-server:6443] [PROJECT=p]
kubeconfig: $(if $(SECRET),$(STAMP)) ## Least-privilege kubeconfig -> Secret Manager (make kubeconfig SECRET=...)
	@if [ -z "$(SECRET)" ]; then echo "$(KUBECONFIG_USAGE)" >&2; exit 2; fi
	$(PY) infra/tools/make_kubeconfig.py --secret "$(SECRET)" \
	  $(if $(NAMESPACE),--namespace "$(NAMESPACE)") $(if $(SERVICE_ACCOUNT),--service-account "$(SERVICE_ACCOUNT)") \
	  $(if $(DURATION),--duration "$(DURATION)") $(if $(CONTEXT),--context "$(CONTEXT)") \
	  $(if $(SERVER),--server "$(SERVER)") $(if $(PROJECT),--project "$(PROJECT)")

clean: ## Remove .venv and caches (keeps the built binaries in .cache/bin)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
