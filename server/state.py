"""What a server app keeps between requests, on `app.extensions` rather than in module globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from .datasets import DatasetCache
    from .db import Store

EXTENSION = "signature_search"


@dataclass
class ServerState:
    """An app's database store and dataset cache."""

    store: Store
    datasets: DatasetCache


def install(app: Flask, server_state: ServerState) -> None:
    """Attach the state to the app."""
    app.extensions[EXTENSION] = server_state


def current() -> ServerState:
    """The state of the app handling this request."""
    return current_app.extensions[EXTENSION]
