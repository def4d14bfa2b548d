# The two README commands: `make demo` runs the job end to end, `make test` runs the tests.
# Both create and use the project's own virtual environment (.venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The package versions DCP workers run: jobs ask for worktime pyodide ^0.28.0, workers bundle
# Pyodide 0.28.2, whose official lock (npm pyodide@0.28.2) is tasks/resources/pyodide-0.28.2-packages.json.
PYODIDE_PINS := numpy==2.2.5 pandas==2.3.1 scikit-learn==1.7.0 scipy==1.14.1 pytest pytest-timeout requests

.PHONY: demo test lint test-pyodide-versions test-dcp-worktime test-evidence test-federation bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m flows --n-signatures 300 --workers 2

# pytest on two processes, a test file each at a time (module fixtures stay whole): the
# suite's whole runs mostly wait on subprocesses and sockets. Files go out in collection
# order, which puts the slow flow files first; xdist's default reorder (most tests first)
# left test_field.py's 3 long tests as a tail of about a minute on one process.
test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The work function under the exact package versions DCP workers run.
.venv-pyodide/.installed: Makefile
	$(PYTHON) -m venv .venv-pyodide
	.venv-pyodide/bin/python -m pip install --quiet $(PYODIDE_PINS)
	touch $@

test-pyodide-versions: $(VENV)/.installed .venv-pyodide/.installed
	SIGSEARCH_COMPARE_PYTHON=$(abspath $(PY)) .venv-pyodide/bin/python -m pytest -p no:cacheprovider tests/tasks/science/test_work.py

# The job as the SDK builds it, run by dcp-client's own Pyodide worktime under real Pyodide in
# Node against the real server (needs node and npm; downloads are cached outside the repo).
test-dcp-worktime: $(VENV)/.installed
	$(PY) -m pytest -m worktime tests/worktime

# The report's statistics at default settings: permuted labels are not significant, real ones are.
test-evidence: $(VENV)/.installed
	$(PY) -m pytest -m evidence -o log_cli=true --log-cli-level=INFO tests/flows/test_evidence.py

# A federated search end to end: a Prefect server, three sites' pools and workers, two failing
# sites, the global report against the pooled analysis (4-6 minutes).
test-federation: $(VENV)/.installed
	$(PY) -m pytest -m federation tests/flows/test_federation.py

bench: $(VENV)/.installed
	$(PY) -m tests.benchmarks.bench_server
	$(PY) -m tests.benchmarks.bench_work
	$(PY) -m tests.benchmarks.bench_throughput
	$(PY) -m tests.benchmarks.bench_report

clean:
	rm -rf $(VENV) .venv-pyodide var .pytest_cache
