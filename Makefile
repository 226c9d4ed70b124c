# The two commands of README: `make demo` and `make test`. Both set up .venv first (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: isear-finetune bench-isear-encoder isear-present setup demo tensorboard test lint sweep bench bench-dedup bench-cache bench-memory bench-callbacks bench-analysis bench-crossover bench-kill-resume bench-threads isear isear-data clean-cache

setup: $(VENV)/.installed

# Re-runs only when pyproject.toml changes (or .venv is gone).
$(VENV)/.installed: pyproject.toml scripts/install_torch.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	bash scripts/install_torch.sh $(PY) $(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The whole pipeline on the bundled sample (src/redheart/demo.py): data report, a short hierarchical LR
# sweep, the 60-epoch main run, sweet spots, crossover, evaluation, final_report.md. DEMO_ARGS go to train.py.
DEMO_ARGS ?=
demo: setup
	$(PY) -m redheart.demo $(DEMO_ARGS)

# TensorBoard over every run under outputs/
tensorboard: setup
	$(VENV)/bin/tensorboard --logdir outputs

# The test suite. pytest's exit code passes through: 5 (no test collected, e.g. a mistyped -k or test
# path) fails too, so a CI job that ran nothing is red.
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# Hierarchical 5-5-5-5 LR sweep on the sample (small preset, 3 epochs per job; docs/sweeps.md).
# The main run then takes the chosen LR: python train.py optim.lr='$${optimal_lr:<sweep dir>}'
SWEEP_ARGS ?= trainer.max_epochs=3
sweep: setup
	$(PY) train.py -m hydra/sweeper=hierarchical_lr callbacks=sweep task_name=lr_sweep $(SWEEP_ARGS)

# The demo's pipeline on ISEAR (../shared/data/isear/isear.csv; override with ISEAR=path), outputs in
# outputs/isear/; ISEAR_ARGS go to train.py. ~20 min on 2 cores; docs/results.md holds its figures.
ISEAR ?= ../shared/data/isear/isear.csv
ISEAR_ARGS ?=
isear: setup isear-present
	$(PY) -m redheart.demo experiment=isear task_name=isear data.path=$(abspath $(ISEAR)) $(ISEAR_ARGS)

# The same pipeline with all-MiniLM-L6-v2 fine-tuned inside the model (experiment=isear_finetune: small
# preset, LLRD, 4 epochs; a short sweep of the encoder's LR). docs/results.md holds its figures.
isear-finetune: setup isear-present
	$(PY) -m redheart.demo experiment=isear_finetune task_name=isear_finetune data.path=$(abspath $(ISEAR)) \
		sweep=short sweep_param=optim.encoder.lr sweep_range=3e-5,1.2e-4 $(ISEAR_ARGS)

# frozen vs fine-tuned encoder vs plain fine-tuning on ISEAR → bench/results/isear_encoder.json (~1.5 h, 2 cores)
bench-isear-encoder: setup isear-present
	$(PY) bench/isear_encoder.py --data $(abspath $(ISEAR))

# Data pipeline only on ISEAR.
isear-data: setup isear-present
	$(PY) train.py data=isear data.path=$(abspath $(ISEAR)) '~model'

isear-present:
	@test -f "$(ISEAR)" || { echo "ISEAR not found at $(ISEAR): it is not bundled (see ../shared/data/isear/README);" \
		"pass its path: make isear ISEAR=/path/to/isear.csv"; exit 1; }

bench: bench-dedup bench-cache bench-memory bench-callbacks bench-analysis bench-crossover bench-kill-resume bench-threads

bench-dedup: setup
	$(PY) bench/dedup_bench.py

bench-cache: setup
	$(PY) bench/embedding_cache_bench.py

# One training step of the 730M `full` preset: peak RSS vs params x 16 B (needs ~12.5 GB RAM, ~1.5 min).
bench-memory: setup
	$(PY) bench/full_step_memory.py

# Callback overhead on `small` epochs (~4 min) and the parameter-update monitor's cost at 730M (~1 min).
bench-callbacks: setup
	$(PY) bench/callback_overhead.py
	$(PY) bench/param_monitor_cost.py

# analyze.py on 30 synthetic full-preset checkpoints (metrics files only): seconds per process.
bench-analysis: setup
	$(PY) bench/analysis_speed.py

# Crossover assembly of the full preset from a synthetic 30-checkpoint bf16 run (writes ~44 GB to a temp dir, ~6 min).
bench-crossover: setup
	$(PY) bench/crossover_memory.py

# SIGKILL a tiny run at 12 moments (inside writes, the last.ckpt relink, random times), resume each time (~1.5 min).
bench-kill-resume: setup
	$(PY) bench/kill_resume.py

# Training-step time with torch's default threads vs threads=1, alone and beside a busy process (~3 min on 2 cores).
bench-threads: setup
	$(PY) bench/cpu_threads.py

clean-cache:
	rm -rf data/*.prepared data/*.embedded.*.safetensors data/cache
