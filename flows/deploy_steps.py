"""Prefect deployment steps."""

from __future__ import annotations

import os
from pathlib import Path


def set_project_directory() -> dict:
    """Pull step: run in the project the worker's environment has, wherever it is checked out."""
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    return {"directory": str(root)}
