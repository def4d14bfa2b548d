"""Server settings: defaults in one place, overridden by environment, then by the factory."""

from __future__ import annotations

import os
from pathlib import Path

ENV_PREFIX = "SIGSEARCH_"
DEFAULTS: dict = {
    "DATA_DIR": "var/data",
    "DATABASE": "var/results.sqlite3",
    "ADMIN_TOKEN": None,
    "ALLOWED_ORIGINS": ["https://dcp.work", "https://scheduler.distributed.computer"],
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    "PUBLIC_URL": None,
}


def load_config(overrides: dict | None = None) -> dict:
    """Merge defaults, `SIGSEARCH_*` environment variables and explicit overrides."""
    config = dict(DEFAULTS)
    for key in DEFAULTS:
        value = os.environ.get(ENV_PREFIX + key)
        if value is None:
            continue
        if key == "ALLOWED_ORIGINS":
            config[key] = [o.strip() for o in value.split(",") if o.strip()]
        elif key == "MAX_CONTENT_LENGTH":
            config[key] = int(value)
        else:
            config[key] = value
    config.update(overrides or {})
    config["DATA_DIR"] = Path(config["DATA_DIR"]).resolve()
    config["DATABASE"] = Path(config["DATABASE"]).resolve()
    if not config.get("ADMIN_TOKEN"):
        raise ValueError("the server needs an admin token (SIGSEARCH_ADMIN_TOKEN or config)")
    return config
