# Two commands for a new machine (see README):
#   make demo   set up, then compress + decompress a real photo next to JPEG and WebP
#   make test   set up, then run the tests (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IMAGE ?= ../shared/data/images/kodak/kodim23.png
Q ?= 75

.PHONY: demo test test-slow bench-kodak lint clean weights

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned to the CPU wheel (2.13.0); an unpinned torch would pull a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[torch,bench,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tokc bench compare $(IMAGE) -q $(Q)

# lint-imports: the layers contract in pyproject.toml (a new import cycle fails CI)
test: $(VENV)/.installed
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow

bench-kodak: $(VENV)/.installed
	$(BIN)/tokc bench rd --images ../shared/data/images/kodak --codecs tokc,jpeg,webp,avif,jxl --name kodak

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info

# Replace the shipped image weights with a training checkpoint: pack, re-export ONNX,
# regenerate the golden values (then review and commit them with the model card).
CKPT ?= runs/image_v3w/ckpt.pt
weights: $(VENV)/.installed
	$(BIN)/python -m tokc.train.pack_image $(CKPT) -o src/tokc/weights/tokc-image-v1.safetensors
	$(BIN)/python -m tokc.export.onnx
	-TOKC_REGEN_GOLDEN=1 $(BIN)/python -m pytest -q tests/golden/test_shipped_image.py -k golden
