# `make test` and `make demo` work on a fresh machine: they create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test demo study-demo encoders clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,onnx]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check repeatseg tools tests
	$(PY) -m pytest -q

# Synthetic VOC (generated into demo_data/ if absent), a small f-RepeatNet 4x trained and
# evaluated on CPU; a finished demo run is resumed (it just prints its metrics again).
DEMO_RUN ?= runs/demo
demo: $(STAMP)
	@if [ -f $(DEMO_RUN)/checkpoints/last.state.pt ]; then \
		$(PY) tools/train_seg.py --resume $(DEMO_RUN) --log-mode plain; \
	else \
		$(PY) tools/train_seg.py --config configs/seg/demo.yaml --output $(DEMO_RUN) --log-mode plain; \
	fi

# The transfer study's reduced grid (4 encoders x 2 seeds, with pretraining), CPU, ~10 minutes.
study-demo: $(STAMP)
	$(PY) tools/transfer_study.py --config configs/study/demo.yaml --output studies/demo

encoders: $(STAMP)
	$(PY) tools/model_info.py --all --segmenter

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
