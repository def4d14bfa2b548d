"""The job's work function: tasks/science/worker.py as the text workers run, shipped or fetched.

DCP compiles a work function's text and calls its first definition, in a namespace of its
own; the local backend's workers compile the same text. Two texts can be shipped:

- the remote stub (the default): `evaluate_slice(datum, dataset, config, work)`, whose
  `work` argument is worker.py's text, fetched by the worker from the run's server like the
  dataset. It checks that text against the config's `worker_sha256`, compiles it once per
  process (per sandbox) and calls the module's `evaluate_slice`. The job then carries neither
  the method nor the classifiers' names.
- the inline shim: one function carrying worker.py's source in the job itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

# Read, not imported: the flow's side need not load scikit-learn to ship it.
WORKER_FILE = Path(__file__).with_name("worker.py")

# Pyodide package names the work function imports (checked against the SDK's lock file).
WORK_MODULES = ("numpy", "scikit-learn", "scipy")

# The config key naming the sha256 of the work source a remote stub may run.
WORKER_SHA256_KEY = "worker_sha256"

SHIPPED_TEMPLATE = '''\
def evaluate_slice(datum, dataset, config):
    """tasks/science/worker.py (sha256 {sha256}), compiled once per process."""
    import builtins

    module = getattr(builtins, "_signature_search_worker", None)
    if module is None or module.get("__sha256__") != "{sha256}":
        module = {{"__name__": "signature_search_worker", "__sha256__": "{sha256}"}}
        exec(compile({source!r}, "signature_search_worker.py", "exec"), module)
        builtins._signature_search_worker = module
    return module["evaluate_slice"](datum, dataset, config)
'''

# Knows nothing of the method: where the source comes from, and which sha256 it must have,
# are the job's arguments. The cache is shared with the inline shim (same key, same layout).
REMOTE_STUB = '''\
def evaluate_slice(datum, dataset, config, work):
    """Run the work source fetched from the run's server once its sha256 is the config's."""
    import builtins
    import hashlib
    import json

    settings = dict(config) if isinstance(config, dict) else json.loads(str(config))
    expected = settings.get("worker_sha256")
    module = getattr(builtins, "_signature_search_worker", None)
    if module is None or not expected or module.get("__sha256__") != expected:
        # A JS String object (a JsProxy under Pyodide) has its text through str().
        text = str(work)
        actual = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if not expected:
            raise ValueError(
                f"work function from the job's work URL has sha256 {actual}, "
                "the config expects none (it has no worker_sha256)"
            )
        if actual != expected:
            raise ValueError(
                f"work function from the job's work URL has sha256 {actual}, "
                f"the config expects {expected}"
            )
        module = {"__name__": "signature_search_worker", "__sha256__": actual}
        exec(compile(text, "signature_search_worker.py", "exec"), module)
        builtins._signature_search_worker = module
    return module["evaluate_slice"](datum, dataset, config)
'''


def worker_source() -> str:
    """worker.py's text: what the server serves a remote stub (and the shim carries)."""
    return WORKER_FILE.read_text(encoding="utf-8")


def source_sha256(source: str) -> str:
    """The UTF-8 sha256 of a work source, as the stub checks it."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def work_function_source() -> str:
    """Return the inline shim: the job carries worker.py's whole source."""
    source = worker_source()
    return SHIPPED_TEMPLATE.format(sha256=source_sha256(source), source=source)


def remote_work_stub() -> str:
    """Return the remote stub: the job carries only this, the source is fetched by URL."""
    return REMOTE_STUB


def load_work_function(source: str) -> Callable[..., str]:
    """Compile shipped work-function text into a callable, as a worker does."""
    namespace: dict = {}
    exec(compile(source, "<work-function>", "exec"), namespace)  # the job's own text
    return namespace["evaluate_slice"]
