# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup browser demo test bench clean

$(BIN)/roiprompt: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "setuptools>=77.0.3"
	# --no-deps: the lock is complete; it keeps resolvers from pulling torchvision or a CUDA torch.
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(BIN)/roiprompt

demo: setup
	$(BIN)/roiprompt demo

# The app's tests drive Debian's chromium headless (playwright talks to it; no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@chromium --version 2>/dev/null

test: setup browser
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) .cache
