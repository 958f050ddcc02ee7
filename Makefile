# amc: `make run` sets everything up and compiles the shipped model for a Raspberry Pi 4;
# `make test` sets everything up and runs the whole test suite. Both work on a fresh Debian machine (as root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := espeak-ng sox cmake clang libclang-rt-14-dev valgrind libsodium-dev \
	gcc-aarch64-linux-gnu g++-aarch64-linux-gnu gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf \
	binutils-aarch64-linux-gnu gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-user qemu-system-arm zstd xdelta3 \
	debootstrap qemu-user-static e2fsprogs mender-client mender-artifact swupdate
# Debian architectures of the Raspberry Pi presets: their libsodium is fetched with apt-get download
FOREIGN_ARCHS := arm64 armhf
EXECUTORCH := executorch==1.5.1
LITERT := ai-edge-litert==2.3.0
# tflite-runtime, the interpreter older Raspberry Pi images carry, needs numpy<2: a venv of its own
TFLITE_RUNTIME_VENV := build/tflite-runtime-venv

.PHONY: setup apt venv device-libs tflite-runtime system run test clean

setup: apt venv device-libs tflite-runtime

apt:
	@missing="$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	archs="$$(for a in $(FOREIGN_ARCHS); do dpkg --print-foreign-architectures | grep -qx $$a || echo $$a; done)"; \
	for a in $$archs; do dpkg --add-architecture $$a; done; \
	if [ -n "$$missing$$archs" ]; then apt-get update || echo "apt-get update reported errors; trying the install"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES); fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Board-side libraries, cached under build/cache: the aarch64 wheels (ExecuTorch runtime, LiteRT),
# Debian's arm64/armhf libsodium for amc-patch, and the board's Python for TFLite bundles (Debian's
# arm64 CPython 3.11 with the aarch64 wheels of ai-edge-litert and of the host's numpy).
device-libs: apt venv
	ls build/cache/wheels/executorch-1.5.1-*aarch64.whl build/cache/wheels/ai_edge_litert-2.3.0-*aarch64.whl >/dev/null 2>&1 || \
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
		--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 -d build/cache/wheels $(EXECUTORCH) $(LITERT)
	$(BIN)/python -m amc.targets.cross_libs
	$(BIN)/python -m amc.targets.board_python

# compile verification runs the .tflite bundles in it too (reported as not checked where it is absent)
tflite-runtime: $(TFLITE_RUNTIME_VENV)/.installed

$(TFLITE_RUNTIME_VENV)/.installed:
	test -d $(TFLITE_RUNTIME_VENV) || $(PYTHON) -m venv $(TFLITE_RUNTIME_VENV)
	$(TFLITE_RUNTIME_VENV)/bin/pip install --quiet tflite-runtime==2.14.0 'numpy<2' || \
		echo "tflite-runtime does not install here: its check is reported as not run"
	touch $@

# The emulated Raspberry Pi 4 system (Debian arm64 with systemd, booted by qemu-system-aarch64 for
# `amc test --target rpi4 --system`), cached under build/cache/system; registers qemu-user-static's
# arm64 binfmt_misc entry to run the packages' maintainer scripts
system: apt venv
	$(BIN)/python -m amc.targets.system

run: setup
	$(BIN)/amc compile --target rpi4

test: setup system
	$(BIN)/python -m pytest -q -ra tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) build
