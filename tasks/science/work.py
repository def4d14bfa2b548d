"""The job's work function: tasks/science/worker.py as the self-contained text workers run.

DCP compiles a work function's text and calls its first definition, in a namespace of its
own; the local backend's workers compile the same text. The text is one function,
`evaluate_slice`, carrying the worker module's source: it compiles that source once per
process (per sandbox) and calls the module's `evaluate_slice`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

# Read, not imported: the flow's side need not load scikit-learn to ship it.
WORKER_FILE = Path(__file__).with_name("worker.py")

# Pyodide package names the work function imports (checked against the SDK's lock file).
WORK_MODULES = ("numpy", "scikit-learn", "scipy")

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


def work_function_source() -> str:
    """Return the exact text shipped to workers (both backends run this text)."""
    source = WORKER_FILE.read_text(encoding="utf-8")
    sha256 = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return SHIPPED_TEMPLATE.format(sha256=sha256, source=source)


def load_work_function(source: str) -> Callable[[object, object, object], str]:
    """Compile shipped work-function text into a callable, as a worker does."""
    namespace: dict = {}
    exec(compile(source, "<work-function>", "exec"), namespace)  # the job's own text
    return namespace["evaluate_slice"]
