"""A local Pyodide distribution for the worktime tests: npm's `pyodide` plus official wheels.

DCP workers load Pyodide and its packages from DCP's package manager, which no machine
here can reach, and the Pyodide CDN is closed too. The runtime comes from the npm package
`pyodide` (its `pyodide-lock.json` is the official lock of that release); the package
wheels come from a carrier on a package registry and are each checked byte for byte
against that lock's sha256. The carrier is a test fixture only, kept in a cache outside
the repository and never a dependency of the product.

Usage: python -m tests.worktime.pyodide_dist  (prints the distribution's directory)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# What DCP workers run for the `pyodide ^0.28.0` worktime jobs request.
PYODIDE_VERSION = "0.28.2"
CARRIERS = {
    # Open WebUI's wheel bundles the official Pyodide 0.28.2 files (checked below, byte for
    # byte). Its licence (BSD-3 with a branding clause) is not OSI open source: a test
    # fixture only; no fully open carrier of the scipy/scikit-learn wheels was found.
    "0.28.2": {"pip": "open-webui==0.6.43", "prefix": "open_webui/frontend/pyodide/"},
}
# Pure-Python packages Pyodide rebuilds (other sha256 than upstream) that no carrier has:
# installed from their upstream PyPI wheel, pinned by PyPI's sha256.
UPSTREAM = {
    "cloudpickle": (
        "cloudpickle==3.1.1",
        "cloudpickle-3.1.1-py3-none-any.whl",
        "c8c5a44295039331ee9dad40ba100a9c7297b6f988e50e87ccdf3765a668350e",
    ),
}
# What the SDK's wrapper and the work function import.
ROOTS = ("numpy", "scipy", "scikit-learn", "cloudpickle")


def cache_root() -> Path:
    """Where downloads live: outside the repository, kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("SIGSEARCH_WORKTIME_CACHE", Path(base) / "signature-search"))


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closure(lock: dict, roots: tuple[str, ...]) -> list[str]:
    """The packages `roots` need, by the lock's `depends`."""
    seen, todo = [], list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.append(name)
            todo.extend(lock["packages"][name]["depends"])
    return sorted(seen)


def _npm_runtime(version: str, target: Path, work: Path) -> dict:
    subprocess.run(
        ["npm", "pack", f"pyodide@{version}", "--silent"], cwd=work, check=True, capture_output=True
    )
    with tarfile.open(work / f"pyodide-{version}.tgz") as archive:
        archive.extractall(work, filter="data")
    for item in (work / "package").iterdir():
        shutil.copy2(item, target / item.name)
    return json.loads((target / "pyodide-lock.json").read_text())


def _carrier_wheels(version: str, lock: dict, names: list[str], target: Path, work: Path) -> dict:
    carrier = CARRIERS[version]
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work)]
    subprocess.run([*pip, carrier["pip"]], check=True)
    [wheel] = work.glob("*.whl")
    provenance = {}
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
        for name in names:
            entry = lock["packages"][name]
            member = carrier["prefix"] + entry["file_name"]
            if member not in members:
                continue
            (target / entry["file_name"]).write_bytes(archive.read(member))
            provenance[name] = {"file": entry["file_name"], "from": carrier["pip"]}
    return provenance


def _upstream_wheels(names: list[str], target: Path, work: Path) -> dict:
    provenance = {}
    for name in names:
        requirement, file_name, sha256 = UPSTREAM[name]
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work)]
        subprocess.run([*pip, requirement], check=True)
        if sha256_of(work / file_name) != sha256:
            raise RuntimeError(f"{file_name} from PyPI does not match its pinned sha256")
        shutil.copy2(work / file_name, target / "upstream" / file_name)
        provenance[name] = {"file": file_name, "from": f"PyPI {requirement}", "sha256": sha256}
    return provenance


def build(version: str, target: Path) -> None:
    """Assemble runtime and wheels into `target`, verifying every wheel against the lock."""
    (target / "upstream").mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lock = _npm_runtime(version, target, work)
        names = closure(lock, ROOTS)
        provenance = _carrier_wheels(version, lock, names, target, work / "carrier")
        for name in provenance:
            entry = lock["packages"][name]
            if sha256_of(target / entry["file_name"]) != entry["sha256"]:
                raise RuntimeError(f"{entry['file_name']} does not match pyodide {version}'s lock")
            provenance[name]["sha256"] = entry["sha256"] + " (= official lock)"
        absent = [n for n in names if n not in provenance]
        provenance.update(_upstream_wheels(absent, target, work / "upstream"))
    record = {"pyodide": version, "lock": lock["info"], "packages": provenance}
    (target / "provenance.json").write_text(json.dumps(record, indent=1, sort_keys=True))


def pyodide_dir(version: str = PYODIDE_VERSION) -> Path:
    """The cached distribution, built once (atomically: a half-built one is never used)."""
    target = cache_root() / f"pyodide-{version}"
    if (target / "provenance.json").is_file():
        return target
    cache_root().mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"pyodide-{version}-", dir=cache_root()))
    try:
        build(version, partial / "dist")
        (partial / "dist").rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(pyodide_dir())
