# ComfyPod: `make up` runs the mesh on ./workspace; `make test` runs the whole suite.
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
WORKSPACE   ?= $(CURDIR)/workspace
COMFYUI_DIR ?= $(CURDIR)/.comfyui
COMFYUI_REF ?= v0.3.64
PYTEST_ARGS ?=
export COMFYUI_DIR

.PHONY: up test lint comfyui venv clean

venv: $(BIN)/.installed
$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e '.[test]'
	touch $@

up: venv ## run the whole mesh locally on ./workspace and print the admin URL and password
	WORKSPACE=$(WORKSPACE) APP_DIR=$(CURDIR) RUN_DIR=$(CURDIR)/.run $(BIN)/comfypod up

test: venv ## the whole suite (pytest exit 5, no tests collected, is a failure)
	$(BIN)/python -m ci.run_tests $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check services admin presets tests bench ci

comfyui: venv ## clone ComfyUI at a pinned release into COMFYUI_DIR and install its requirements
	test -d $(COMFYUI_DIR) || git clone --depth 1 --branch $(COMFYUI_REF) https://github.com/comfyanonymous/ComfyUI.git $(COMFYUI_DIR)
	$(BIN)/pip install -r $(COMFYUI_DIR)/requirements.txt

clean:
	rm -rf .run .pytest_cache artifacts

# ---- image builds (docker/) ---------------------------------------------------------------
