# The two commands: `make run` and `make test`. Both create .venv, install the pinned
# requirements, and use DATABASE_URL / REDIS_URL when set, else a private PostgreSQL and Redis.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEVSTACK := $(PY) scripts/devstack.py

.PHONY: run manage test test-host test-cluster test-browser browser-deps deploy-deps audit lint format bench bench-claims bench-generate bench-api bench-push bench-growth sim sim-large clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(DEVSTACK) run

# A management command against the stack `make run` started (in another terminal):
#   make manage ARGS="generate_telegram_tasks --limit=100"
manage: $(STAMP)
	@test -f .devstack/env || { echo "make manage talks to the stack of a running 'make run'; start it in another terminal first" >&2; exit 2; }
	@. ./.devstack/env && $(PY) manage.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(DEVSTACK) exec -- $(PY) -m pytest $(PYTEST_ARGS)

# The app as another Django project installs it: its wheel in a fresh virtualenv, the host
# project of tests/host/ (an order model of its own), a fresh database, one flow end to end.
test-host: $(STAMP)
	$(DEVSTACK) exec -- $(PY) tests/host/run.py

# The claims, the services and the simulation on a real Redis Cluster (3 masters, 3 replicas,
# from the same redis-server binary), one master failed over mid-simulation.
CLUSTER_TESTS := tests/test_claims.py tests/test_claims_tiers.py tests/test_selection.py tests/services
test-cluster: $(STAMP)
	$(PY) scripts/cluster.py exec -- $(DEVSTACK) exec -- $(PY) -m pytest $(PYTEST_ARGS) $(CLUSTER_TESTS)
	$(PY) sim/run.py --size small --redis cluster

# The admin in a real browser: Debian's Chromium, headless, driven by Playwright (its Python
# package only: it launches the system's browser, never downloads one). Screenshots at 1366x768
# in screenshots/.
CHROMIUM ?= /usr/bin/chromium
test-browser: $(STAMP) browser-deps
	CHROMIUM=$(CHROMIUM) $(DEVSTACK) exec -- $(PY) -m pytest $(PYTEST_ARGS) tests_browser

# Installs Chromium (and fonts: text, and emoji for the reaction picker) with apt-get when
# missing: as root, or through sudo.
BROWSER_PACKAGES = chromium fonts-dejavu-core fonts-noto-color-emoji
browser-deps:
	@{ test -x $(CHROMIUM) && test -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf; } || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES) \
		|| { $$SUDO apt-get update -q && \
		     $$SUDO apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES); }; }

# nginx, for tests/test_deploy.py (the shipped proxy config, `nginx -t` and live in front of
# gunicorn; skipped without it): installed with apt-get when missing, as root or through sudo.
deploy-deps:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y -q --no-install-recommends nginx \
		|| { $$SUDO apt-get update -q && \
		     $$SUDO apt-get install -y -q --no-install-recommends nginx; }; }

# The installed dependencies against published advisories (pip-audit): fails on an advisory;
# says so, without failing, when the advisory source cannot be reached (AUDIT_STRICT=1: fail).
audit: $(STAMP)
	$(PY) scripts/audit.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: bench-claims bench-generate bench-api bench-push

bench-claims: $(STAMP)
	$(DEVSTACK) exec -- $(PY) bench/claims.py

bench-generate: $(STAMP)
	$(DEVSTACK) exec -- $(PY) bench/generate.py

bench-api: $(STAMP)
	$(DEVSTACK) exec -- $(PY) bench/api.py

bench-push: $(STAMP)
	$(DEVSTACK) exec -- $(PY) bench/push.py

# Not in `make bench`: writes two million tasks (minutes). HISTORY=20000000 for the full size.
bench-growth: $(STAMP)
	$(DEVSTACK) exec -- $(PY) bench/growth.py --history $${HISTORY:-2000000}

clean:
	rm -rf $(VENV) .devstack .pytest_cache .ruff_cache

sim: $(STAMP)
	$(PY) sim/run.py --size small

sim-large: $(STAMP)
	$(PY) sim/run.py --size large
