# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Every target is idempotent: a stamp file records a finished set-up, keyed by the files that define it.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
STAMP   = $(VENV)/.soco-setup-stamp
# Pinned: an unpinned torch/torchvision pulls a multi-GB download.
TORCH   = torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: setup demo test bench gpu-check clean help

help:
	@echo "make demo   - set up .venv and run the main job (outputs under demo_out/)"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make bench  - set up .venv and run the benchmark commands (reports under bench_out/)"
	@echo "make gpu-check - on a CUDA machine: the gpu test tier + latency + SOCO throughput (no set-up, PYTHONPATH=.)"
	@echo "make setup  - only the set-up"

setup: $(STAMP)

$(STAMP): setup.py package.xml Makefile soco_ros/tf2_msgs_build.py
	@if [ "$$(id -u)" = "0" ] && ! ldconfig -p 2>/dev/null | grep -q libusb-1.0.so.0; then \
		echo "[setup] installing libusb-1.0-0 (needed by Open3D)"; \
		(apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -qq >/dev/null && apt-get install -y -qq libusb-1.0-0 >/dev/null)) \
		|| echo "[setup] warning: could not install libusb-1.0-0; Open3D features will be unavailable"; \
	fi
	@if [ "$$(id -u)" = "0" ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then \
		echo "[setup] installing chromium chromium-driver (the browser test tier, tests/test_demo_browser.py)"; \
		(apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || (apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver >/dev/null)) \
		|| echo "[setup] warning: could not install chromium; the browser tests will be skipped (a failure on CI)"; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH)
	@# sam2 (SAM 2.1 mask source): SAM2_BUILD_CUDA=0 skips its optional CUDA extension, which needs nvcc
	SAM2_BUILD_CUDA=0 $(PIP) install -q -e ".[all]"
	@# tf2_msgs (for /tf) from its upstream definition with the rosidl generators of the wheels; never fatal
	@$(PY) -m soco_ros.tf2_msgs_build --quiet || echo "[setup] warning: tf2_msgs not built; the node publishes the alignment on ~/alignment only (docs/ros.md, /tf)"
	@touch $(STAMP)

demo: setup
	$(PY) -m correspondence.demo --out demo_out

test: setup
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

# Runs from the source tree with whatever python has torch (a bare GPU machine: no make setup, nothing installed).
GPU_PYTHON ?= python3
gpu-check:
	PYTHONPATH=.:$(CURDIR)/.gpu_deps:$$PYTHONPATH $(GPU_PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

SHARED ?= ../shared
bench: setup
	$(PY) -m correspondence.cli bench latency --backbones dinov2_vits14 --sizes 224,448 --runtimes torch,onnxruntime --random-weights --out bench_out/latency
	$(PY) -m correspondence.cli bench alignment --backbone auto --trials 100 --functional-trials 40 --size 448 --out bench_out/alignment
	$(PY) -m correspondence.cli synth soco --out bench_out/data/soco --views 20 --pairs-per-category 20 --cross-pairs 10
	$(PY) -m correspondence.cli bench soco --root bench_out/data/soco --backbone auto --out bench_out/soco --linear-probe --four-choice
	@if [ -f $(SHARED)/data/umd_i/UMD_i.zip ]; then $(PY) -m correspondence.cli bench umd --root $(SHARED)/data/umd_i/UMD_i.zip --backbone auto --out bench_out/umd; \
	else echo "UMD-i skipped: $(SHARED)/data/umd_i/UMD_i.zip not found"; fi
	$(PY) -m correspondence.cli synth functional --out bench_out/data/functional --views 8 --size 160
	$(PY) -m correspondence.cli train functional --data bench_out/data/functional --backbone auto --epochs 4 --batches-per-epoch 25 --batch-pairs 8 --out bench_out/functional_head/head
	$(PY) -m correspondence.cli bench functional --root bench_out/data/functional --backbone auto --head bench_out/functional_head/head.safetensors --out bench_out/functional

clean:
	rm -rf demo_out bench_out .pytest_cache
