"""Facts about the host for the run record."""

from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "prefect", "flask", "dcp", "pythonmonkey")


def package_versions() -> dict[str, str]:
    """Versions of the packages a report depends on."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def runtime_info() -> dict:
    """Host facts for the run record (no environment variables: they may hold secrets)."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "versions": package_versions()}
