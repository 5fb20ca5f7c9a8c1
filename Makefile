PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The oldest azure-servicebus we support, tested in its own environment.
COMPAT_VENV := .venv-sdk714
COMPAT_STAMP := $(COMPAT_VENV)/.installed
PYTEST_WORKERS ?= 4
# 5672 is the official emulator's port, but RabbitMQ often holds it; `make run SB_PORT=5672`.
SB_PORT ?= 5673
ADMIN_PORT ?= 5300

.PHONY: setup test test-unit test-integration test-mutation test-compat lint bench crash-soak soak run up load clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,workers,standins,harness,stack,load,profile]'
	touch $(STAMP)

$(COMPAT_STAMP): pyproject.toml
	test -x $(COMPAT_VENV)/bin/python || $(PY) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install --quiet -e '.[test]' 'azure-servicebus==7.14.3'
	touch $(COMPAT_STAMP)

## test: everything CI runs — unit, scenarios, mutation proof, then the SDK tests on azure-servicebus 7.14
test: test-unit test-integration test-mutation test-compat

test-unit: setup browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

## browser: Debian's Chromium for the console's browser tests (skipped, with the reason, without it)
.PHONY: browser screenshots
browser:
	@sh scripts/install-chromium.sh

## screenshots: docs/console/*.png from the real local system (jobs run, chat ones dead-lettered)
screenshots: setup browser
	$(BIN)/python scripts/console_screenshots.py

## test-integration: the scenarios — real worker apps on a stack (HARNESS_STACK=local|embedded|...)
test-integration: setup
	$(BIN)/python -m pytest -q scenarios -n 2 --reruns 1 -rR

## test-mutation: each known defect put back (scenarios/mutants.py) must make its scenarios fail
test-mutation: setup
	$(BIN)/python -m pytest -q mutation -n 2

test-compat: $(COMPAT_STAMP)
	$(COMPAT_VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) tests/servicebus

## images: the containers provider's images without a registry (images/build.sh, docs/stack.md):
##         a Debian base (debootstrap, once), PostgreSQL, Redis, a Ryuk-protocol reaper and the
##         emulator; also tagged with the pinned upstream names the engine lacks (IMAGES_TAG_UPSTREAM)
.PHONY: images test-containers
IMAGES_TAG_UPSTREAM ?= auto
images:
	IMAGES_TAG_UPSTREAM=$(IMAGES_TAG_UPSTREAM) sh images/build.sh

## test-containers: the tests that need a Docker engine and those images; they fail, not skip,
##                  when there is none (not part of `make test`: see docs/stack.md)
CONTAINER_TESTS := tests/harness/test_images_engine.py tests/harness/test_emulator_container.py \
	tests/harness/test_stack_docker.py::test_containers_provider_for_real
test-containers: setup images
	SBH_REQUIRE_ENGINE=1 TC_POOLING_INTERVAL=0.1 $(BIN)/python -m pytest -q -rs -n 2 $(CONTAINER_TESTS)

## test-integration-containers: the whole scenario suite on the containers stack (PostgreSQL
##                  and Redis in testcontainers), the fault scenarios that pause and stop them
##                  included, then the mutants only those scenarios can catch
.PHONY: test-integration-containers
test-integration-containers: setup images
	TC_POOLING_INTERVAL=0.1 $(BIN)/python -m pytest -q scenarios --stack containers -n 2 --reruns 1 -rR
	SBH_MUTANTS_STACK=containers SBH_REQUIRE_ENGINE=1 TC_POOLING_INTERVAL=0.1 $(BIN)/python -m pytest -q mutation -n 2

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmarks

## crash-soak: SIGKILL a durable emulator (--data-dir) under SDK load, CRASH_ROUNDS rounds of
##             CRASH_KILLS kills each (random seeds, printed), checking every acknowledged outcome
CRASH_ROUNDS ?= 20
CRASH_KILLS ?= 3
crash-soak: setup
	$(BIN)/python tests/servicebus/crash_workload.py --rounds $(CRASH_ROUNDS) --kills $(CRASH_KILLS)

## soak: SOAK_MESSAGES through the seed topology (SDK batch senders in SOAK_SENDERS processes,
##       peek-lock receivers, the clock moved so locks lapse, schedules fall due, TTLs expire and
##       dead-letter), drained wave by wave; prints the emulator's memory per wave and fails
##       unless it comes back once drained. SOAK_ARGS='--malloc' (C allocator) or '--tracemalloc'
SOAK_MESSAGES ?= 1000000
SOAK_WAVE ?= 50000
SOAK_SENDERS ?= 2
SOAK_ARGS ?=
soak: setup
	$(BIN)/python tests/servicebus/soak_workload.py --messages $(SOAK_MESSAGES) --wave $(SOAK_WAVE) --senders $(SOAK_SENDERS) $(SOAK_ARGS)

## up: the whole local system (emulator, stand-ins, worker apps, job API) until Ctrl-C;
##     the emulator's state is kept in .data/servicebus (FRESH=1 starts empty);
##     INSTANCES=jobs=2,notify=3 runs that many host processes of those apps (scale-out)
DATA_DIR ?= .data/servicebus
INSTANCES ?=
up: setup
	$(BIN)/python -m harness up --sb-port $(SB_PORT) --admin-port $(ADMIN_PORT) \
		--data-dir $(DATA_DIR) $(if $(FRESH),--fresh) $(if $(INSTANCES),--instances $(INSTANCES))

## load: Locust capacity profiles against `make up` (run it in another terminal first);
##       LOAD_ARGS='--headless --tier 50 --capacity-report load-50.json', see docs/load.md
LOAD_HOST ?= http://127.0.0.1:8000
LOAD_ARGS ?=
load: setup
	$(BIN)/locust -f load/ --host $(LOAD_HOST) $(LOAD_ARGS)

## profile: CPU seconds per completed job per component (emulator, job API, stand-ins, each
##          host, Locust) under a fixed Locust load, median of PROFILE_REPEATS runs, with
##          py-spy hot spots; PROFILE_ARGS='--baseline REF' also profiles REF, interleaved,
##          for before/after in one run; writes .data/profile/profile.{json,md} (docs/load.md)
.PHONY: profile
PROFILE_REPEATS ?= 3
PROFILE_ARGS ?= --hot-spots
profile: setup
	$(BIN)/python scripts/profile.py --repeats $(PROFILE_REPEATS) $(PROFILE_ARGS)

run: setup
	$(BIN)/sbemu --config config/Config.json --port $(SB_PORT) --admin-port $(ADMIN_PORT)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .pytest_cache build *.egg-info
