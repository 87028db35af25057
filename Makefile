# The two commands of the README:
#   make quickstart   set up, fetch the quickstart data, run gin/quickstart.gin
#   make test         set up, fetch the test data, lint (ruff), run the test suite
# For development: make test-fast (unit tests, no `slow` ones), make lint.
# Both create .venv and install the pinned requirements on first use, then the
# package itself in editable mode (`import epsd_tf`, epsd-run, epsd-sweep and
# epsd-export work from any directory; edits to the checkout take effect at once).
# make test also runs the TF-free JAX suite (make test-jax) in .venv-jax.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/quickstart
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data quickstart test bench clean
.PHONY: lint test-fast setup-jax test-jax test-tf

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-tfmot.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-tfmot.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Fashion-MNIST from Debian's package (offline); without root or apt, the
# quickstart falls back to TFDS, which downloads on a connected machine.
data:
	@if [ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST found in $(FASHION_MNIST)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist || \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
	else \
	  echo "Fashion-MNIST not in $(FASHION_MNIST) and apt-get unavailable: run" \
	       "'sudo apt-get install dataset-fashion-mnist', or let TFDS download it."; \
	fi

quickstart: setup data
	$(PY) tools/run.py --gin_file=gin/quickstart.gin --workdir=$(WORKDIR)

# make test: lint, then the TF suite and the JAX suite at once, each suite's
# output printed whole when it ends. Most of either suite is one process on one
# core (imports, tracing, compiling, subprocess runs: about 1.1 cores busy on
# average), so on 2 cores the two overlap: 700 s one after the other, 486 s at
# once, measured back to back on 2 cores in the VM's fast phase; in its slow phase
# (session 15, fresh clone) the TF suite took 1 098 s and the JAX suite 862 s at
# once, and in session 16's (a slower phase still) 1 648 s and 1 173 s. Tests
# marked `backend_free` (no backend code runs) run once, in the JAX suite.
test: lint setup setup-jax data
	$(MAKE) --no-print-directory --output-sync=target -j2 test-tf test-jax

test-tf: setup data
	$(PY) -m pytest -q -m "not backend_free" tests

# The JAX backend without TensorFlow: a separate venv from requirements-jax.txt.
VENV_JAX ?= .venv-jax
PY_JAX := $(VENV_JAX)/bin/python

setup-jax: $(VENV_JAX)/.installed

$(VENV_JAX)/.installed: requirements-jax.txt pyproject.toml
	$(PYTHON) -m venv $(VENV_JAX)
	$(PY_JAX) -m pip install --quiet -r requirements-jax.txt
	$(PY_JAX) -m pip install --quiet --no-deps -e .
	touch $@

# tests/jax/ and the backend-neutral tests (the `jax` mark; tests/conftest.py)
# on Keras' JAX backend, two XLA host devices, no TensorFlow installed. A
# collective of the two host devices waits for both of their threads, and XLA
# aborts the process when one is 40 s late (its default): on 2 cores loaded by
# other work that happened once (the data-parallel driver's smoke, session 14),
# so the tests give it 300 s; subprocesses inherit XLA_FLAGS. The session shares one
# JAX compilation cache (tests/conftest.py): the suite alone took 732 and 689 s with it
# and 921 s without, run in between (session 15; the same on 2 cores, alternated).
XLA_FLAGS_JAX_TESTS := --xla_force_host_platform_device_count=2 \
  --xla_cpu_collective_call_terminate_timeout_seconds=300
test-jax: setup-jax data
	KERAS_BACKEND=jax XLA_FLAGS="$(XLA_FLAGS_JAX_TESTS)" \
	  $(PY_JAX) -m pytest -q -m jax tests

lint: setup
	$(VENV)/bin/ruff check .

# The unit-test loop: everything except tests marked `slow` (subprocesses,
# multi-minute training); see pyproject.toml.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

bench: setup data
	$(PY) tools/bench.py --output=runs/bench.json

clean:
	rm -rf $(VENV) $(VENV_JAX) runs
