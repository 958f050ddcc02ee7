# amc: `make run` sets everything up and compiles the shipped model for a Raspberry Pi 4;
# `make test` sets everything up and runs the whole test suite. Both work on a fresh Debian machine (as root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := espeak-ng sox cmake clang libclang-rt-14-dev valgrind libsodium-dev \
	gcc-aarch64-linux-gnu g++-aarch64-linux-gnu gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf \
	gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-user qemu-system-arm zstd xdelta3

.PHONY: setup apt venv run test clean

setup: apt venv

apt:
	@if [ -n "$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES); fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(BIN)/amc eval --data model/reference/testset --json

test: setup
	$(BIN)/python -m pytest -q -ra tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) build
