# Leitstand — every target but `venv` runs inside .venv, which `make venv` creates.
# The two commands of the README: `make demo` and `make test`.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv binaries prometheus chromium soak lint test unit e2e demo bench bench-full crds generate manifests clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with leitstand installed in editable mode

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sim]'
	touch $@

binaries: $(STAMP) ## build the control plane, kwok, helm and the controllers tests start (hack/) into the cache
	$(BIN)/leitstand dev-cluster build

lint: $(STAMP) ## ruff, mypy --strict and the import-linter layer contracts
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/mypy
	$(BIN)/lint-imports

prometheus: ## unpack Debian's prometheus and promtool into the cache (for the observability tests)
	bash hack/debian-prometheus.sh

chromium: ## install Debian's chromium (headless browser tests of the cluster map)
	bash hack/debian-chromium.sh

test: lint binaries prometheus chromium ## lint, then every unit and e2e test
	$(BIN)/pytest tests/unit tests/e2e

unit: $(STAMP) ## the fast, pure unit tests
	$(BIN)/pytest tests/unit

e2e: binaries ## the end-to-end tests on the real local control plane
	$(BIN)/pytest tests/e2e

demo: binaries ## the site in small, the operator, the examples and their scenario, and the map URL; Ctrl-C tears it all down
	$(BIN)/leitstand demo

soak: binaries ## 50,000 liveness scenarios, 10x the generated bad input, then 30 minutes of trace-driven load (not in CI)
	LEITSTAND_LIVENESS_SCENARIOS=50000 $(BIN)/pytest tests/unit/core/test_contention.py -k settles --timeout 3600
	LEITSTAND_FUZZ_CASES=5000 $(BIN)/pytest tests/e2e/test_bad_input.py -k generated
	$(BIN)/python -m tests.soak.trace_load --minutes 30

bench: $(STAMP) ## quick benchmarks: the scheduling cycle, the snapshot of pods, the simulator on the real traces, elastic gangs and consolidation (BENCHMARKS.md)
	$(BIN)/python -m tests.bench.cycle
	$(BIN)/python -m tests.bench.snapshot
	$(BIN)/python -m tests.bench.simulation
	$(BIN)/python -m tests.bench.elastic

bench-full: bench binaries ## and Leitstand beside kube-scheduler, and beside Kueue, on the real control plane
	$(BIN)/python -m tests.bench.peer
	$(BIN)/python -m tests.bench.kueue --out docs/benchmarks/kueue

generate: $(STAMP) binaries ## regenerate the pod template's schema, crds/, dashboards, alert rules, the chart's files and deploy/manifests
	$(BIN)/leitstand crds --refresh-pod-template --out crds
	$(BIN)/leitstand dashboards --out deploy
	rm -rf helm/leitstand/files && mkdir -p helm/leitstand/files/crds helm/leitstand/files/grafana helm/leitstand/files/prometheus
	cp crds/*.yaml helm/leitstand/files/crds/
	cp deploy/grafana/*.json helm/leitstand/files/grafana/
	cp deploy/prometheus/rules.yaml helm/leitstand/files/prometheus/
	$(MAKE) manifests

manifests: binaries ## render deploy/manifests/leitstand.yaml from the chart (default values)
	"$$($(BIN)/leitstand dev-cluster build helm | cut -f2)" template leitstand helm/leitstand \
		--namespace leitstand-system > deploy/manifests/leitstand.yaml

crds: $(STAMP) ## regenerate crds/ from the models
	$(BIN)/leitstand crds --out crds

clean: ## remove .venv and caches (the binary cache outside the repository stays)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
