# Two commands for a new machine (see README):
#   make demo   set up, then compress + decompress a real photo next to JPEG and WebP, and a
#               speech clip next to Opus
#   make test   set up, then run the tests (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IMAGE ?= ../shared/data/images/kodak/kodim23.png
Q ?= 75
# a validation-split speaker (never trained on)
AUDIO ?= ../shared/data/audio/speech/speechocean762/SPEAKER0036_000360034.flac
KBPS ?= 12

.PHONY: demo test test-slow fuzz bench-kodak lint clean weights

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned to the CPU wheel (2.13.0); an unpinned torch would pull a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[torch,bench,dev,batch]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tokc bench compare $(IMAGE) -q $(Q)
	$(BIN)/tokc bench compare $(AUDIO) -b $(KBPS)

# lint-imports: the layers contract in pyproject.toml (a new import cycle fails CI)
test: $(VENV)/.installed
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow

# Coverage-guided fuzzing (atheris) of the .tokc reader, tokc.decompress and every decoder with
# the tiny test models, FUZZ_SECONDS long; what it finds stays in .fuzz/corpus for the next run,
# crashes go to .fuzz/crashes/ (make them regression files in tests/fuzz/regressions/).
# The test command runs 15 s of it (tests/fuzz/test_fuzz.py).
FUZZ_SECONDS ?= 600
fuzz: $(VENV)/.installed
	$(BIN)/python tests/fuzz/fuzz.py --work .fuzz --seconds $(FUZZ_SECONDS)

bench-kodak: $(VENV)/.installed
	$(BIN)/tokc bench rd --images ../shared/data/images/kodak --codecs tokc,tokc-perceptual,jpeg,webp,avif,jxl --name kodak -f

# issue 15's audio benchmark on the validation split (tokc vs Opus voip and MP3; ViSQOL runs at
# about real time, so this takes tens of minutes) and the music table; AUDIO_WEIGHTS=PATH
# benchmarks a checkpoint before it is shipped
AUDIO_WEIGHTS ?=
bench-audio: $(VENV)/.installed
	$(BIN)/tokc bench rd --audio ../shared/data/audio/speech --split val \
	  --music ../shared/data/audio/music --name speech_val -f \
	  $(if $(AUDIO_WEIGHTS),--weights $(AUDIO_WEIGHTS))

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
	$(if $(SLIM),$(BIN)/python -m tokc.train.image_slim --out $(SLIM) --pack src/tokc/weights/tokc-image-v1.safetensors)
	$(BIN)/python -m tokc.export.onnx
	-TOKC_REGEN_GOLDEN=1 $(BIN)/python -m pytest -q tests/golden/test_shipped_image.py -k golden
