# geosynth: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.geosynth-installed
# torch and torchvision are pinned to releases that pip finds on this project's machines;
# on a CUDA workstation the same pins install the CUDA build from PyPI.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-out
VALIDATE_OUT ?= validate-out

.PHONY: install install-check demo validate test test-all lint format clean bench-gpu bench-gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The README's core install (no extras) in a fresh venv in a temp dir, then a few commands;
# downloads from PyPI, several minutes. Leaves .venv alone.
install-check:
	PYTHON=$(PYTHON) TORCH_SPEC='$(TORCH_SPEC)' bash scripts/install_check.sh

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/geosynth demo --out $(DEMO_OUT)

# About an hour on 2 CPU cores: a latent diffusion model trained from scratch on real EuroSAT and
# seed 000's claims measured on it (docs/validation.md). Stages cache under $(VALIDATE_OUT).
validate: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/validate.py --work $(VALIDATE_OUT) --jobs 4

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

test-all: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m ''

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# GPU benchmarks (bench/gpu.sh): SD 2.1 and the other steps, then SDXL; BENCH=sd21 or BENCH=sdxl
# runs one part (one device call each). A lent GPU machine has torch but no package index:
# run `make bench-gpu-wheels` here first, then carry .whl/ with the working tree.
GPU_WHEELS := diffusers open_clip_torch ftfy wcwidth
bench-gpu-wheels:
	mkdir -p .whl
	python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d .whl \
	  $$(for p in $(GPU_WHEELS); do grep -i "^$$p==" constraints.txt; done)

bench-gpu:
	bash bench/gpu.sh

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
