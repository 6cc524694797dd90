# DriveFI: `make run` and `make test` set everything up (a .venv with all extras) and then run.
PY_FOR_VENV := $(shell for p in python3.11 python3.12 python3.10 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] <= (3,12))' && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCENARIO ?= lead_brake
OUT ?= out/$(SCENARIO)

.PHONY: run test lint format bench bench-falsifiers clean

# The carla and ray extras carry platform markers: where they have no wheels they install nothing
# and their tests skip with a reason, so this works on any platform with Python 3.10-3.12.
$(STAMP): pyproject.toml
	@test -n "$(PY_FOR_VENV)" || { echo "DriveFI needs Python 3.10-3.12"; exit 2; }
	test -x $(PY) || $(PY_FOR_VENV) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[carla,ray,dev]'
	touch $(STAMP)

# The main job on the embedded simulator: golden run -> training runs -> 3-TBN fit -> search ->
# validate the predicted faults by injection -> random-FI baseline -> summary (artefacts in OUT).
run: $(STAMP)
	$(VENV)/bin/drivefi pipeline $(SCENARIO) --out $(OUT)

# The suite runs in two processes (pytest-xdist): about 7 min instead of 11 on a 2-core machine.
test: $(STAMP)
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff format --check drivefi tests bench examples
	$(VENV)/bin/ruff check drivefi tests bench examples

format: $(STAMP)
	$(VENV)/bin/ruff format drivefi tests bench examples
	$(VENV)/bin/ruff check --fix drivefi tests bench examples

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

# DriveFI's search against VerifAI's falsifiers (bench/bench_falsifiers.py). VerifAI pins old
# packages, so it lives in a venv of its own, .venv-falsifiers, never in drivefi's dependencies.
FVENV := .venv-falsifiers
FSTAMP := $(FVENV)/.installed
$(FSTAMP): pyproject.toml bench/requirements-falsifiers.txt
	@test -n "$(PY_FOR_VENV)" || { echo "DriveFI needs Python 3.10-3.12"; exit 2; }
	test -x $(FVENV)/bin/python || $(PY_FOR_VENV) -m venv $(FVENV)
	$(FVENV)/bin/python -m pip install --quiet --upgrade pip
	$(FVENV)/bin/python -m pip install --quiet -e '.[carla,dev]'
	$(FVENV)/bin/python -m pip install --quiet -r bench/requirements-falsifiers.txt
	touch $(FSTAMP)

bench-falsifiers: $(FSTAMP)
	$(FVENV)/bin/python bench/bench_falsifiers.py $(ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache
