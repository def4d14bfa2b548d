"""The data server on waitress in a background thread, for flows and tests."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .config import waitress_options

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedServer:
    """The Flask app on waitress in a background thread, bound to a free loopback port."""

    def __init__(self, app: Flask, threads: int = 8) -> None:
        from waitress import create_server

        self._server = create_server(
            app,
            host="127.0.0.1",
            port=free_loopback_port(),
            threads=threads,
            **waitress_options(app),
        )
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="embedded-server", daemon=True)
        self._thread.start()
        log.info("embedded server on %s", self.url)

    @classmethod
    def for_data(cls, data_dir: Path, database: Path, admin_token: str) -> EmbeddedServer:
        """The data server for a data directory and results database."""
        from server import create_app

        return cls(
            create_app({"DATA_DIR": data_dir, "DATABASE": database, "ADMIN_TOKEN": admin_token})
        )

    def _serve(self) -> None:
        # Loop in short turns and close from this thread: closing the sockets from another
        # thread while the loop waits on them fails with EBADF.
        while not self._stop.is_set():
            self._server.asyncore.loop(
                timeout=0.1,
                map=self._server._map,
                count=1,
                use_poll=self._server.adj.asyncore_use_poll,
            )
        self._server.close()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._stop.set()
        self._thread.join(timeout=10)
