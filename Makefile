# ComfyPod: `make up` runs the mesh on ./workspace; `make test` runs the whole suite.
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
WORKSPACE   ?= $(CURDIR)/workspace
COMFYUI_DIR ?= $(CURDIR)/.comfyui
# the ComfyUI commit the image pins too (docker/custom-nodes.lock: 0.3.64)
COMFYUI_GIT ?= https://github.com/Comfy-Org/ComfyUI.git
COMFYUI_COMMIT ?= a125cd84b054a57729b5eecab930ca9408719832
PYTEST_ARGS ?= -n 2 --durations=25
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
	test -d $(COMFYUI_DIR)/.git || (git init -q $(COMFYUI_DIR) && git -C $(COMFYUI_DIR) fetch -q --depth 1 $(COMFYUI_GIT) $(COMFYUI_COMMIT) && git -C $(COMFYUI_DIR) checkout -q FETCH_HEAD)
	$(BIN)/pip install -r $(COMFYUI_DIR)/requirements.txt

clean:
	rm -rf .run .pytest_cache artifacts

# ---- image builds (docker/) ---------------------------------------------------------------
# Targets: build (one tag), build-all, push, print (resolved bake config), sage (the wheel alone,
# outside Docker, on a machine with nvcc and torch), lint-docker. The table is docker/cuda-matrix.json;
# an unknown CUDA stops before anything runs, listing the supported versions.
CUDA        ?= 13.0
ARCH        ?=
SAGE_PYTHON ?= $(BIN)/python
BAKE        ?= docker buildx bake
BAKE_FILES  := -f docker/docker-bake.hcl -f docker/cuda-matrix.json
BAKE_FLAGS  ?=
SUPPORTED_CUDA = $(shell $(PYTHON) -m ci.matrix versions)
CHECKED_CUDA = $(if $(filter $(CUDA),$(SUPPORTED_CUDA)),$(CUDA),$(error CUDA=$(CUDA) is not supported; supported: $(SUPPORTED_CUDA)))
BAKE_TARGET = $(if $(filter all,$(CUDA)),all,cu$(subst .,,$(CHECKED_CUDA)))

.PHONY: build build-all push print sage lint-docker

build: ## build one image tag: make build CUDA=12.6
	$(strip $(BAKE) $(BAKE_FILES) $(BAKE_FLAGS) $(BAKE_TARGET))

build-all: ## build every tag of docker/cuda-matrix.json
	$(strip $(BAKE) $(BAKE_FILES) $(BAKE_FLAGS) all)

push: ## build and push one tag (CUDA=12.8) or every tag (CUDA=all)
	$(strip $(BAKE) $(BAKE_FILES) $(BAKE_FLAGS) --push $(BAKE_TARGET))

print: ## the resolved bake configuration of one tag
	$(BAKE) $(BAKE_FILES) --print $(BAKE_TARGET)

sage: venv ## the SageAttention wheel alone: make sage [CUDA=12.8] [ARCH="8.9 9.0"] [SAGE_PYTHON=python-with-torch]
	$(BIN)/python -m ci.sage build --python $(SAGE_PYTHON) $(if $(filter command line environment,$(origin CUDA)),--cuda $(CHECKED_CUDA)) $(if $(ARCH),--arch "$(ARCH)")

lint-docker: venv ## hadolint on docker/Dockerfile, shellcheck on every shell script
	$(BIN)/hadolint --config docker/hadolint.yaml docker/Dockerfile
	$(BIN)/python -m ci.shell_scripts | xargs -r $(BIN)/shellcheck

lint: lint-docker
