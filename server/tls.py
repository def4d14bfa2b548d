"""HTTPS for `python -m server`: stdlib TLS (asyncio + ssl) in front of waitress on loopback.

waitress speaks no TLS. cheroot does, but it runs each TLS handshake in its one accepting
thread: a single client that opens a TCP connection and sends nothing stalled every other
client for the socket timeout (measured: 9.8 s with cheroot 11.1.2). Here asyncio does the
handshakes (with a timeout, none blocking another) and hands each decrypted connection to
waitress on a loopback port, so waitress keeps every transport limit it has over HTTP:
header and body sizes checked before a body is read, idle connections closed after its
channel timeout, its connection limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A client has this long to complete its handshake; until then it costs a socket, no thread.
HANDSHAKE_TIMEOUT = 10.0
CHUNK = 64 * 1024


class TlsSettingsError(ValueError):
    """A certificate or key that cannot be used; the message names the file."""


def _readable(path: Path, what: str) -> None:
    if not path.is_file():
        raise TlsSettingsError(f"{what} {path}: no such file")
    if not os.access(path, os.R_OK):
        raise TlsSettingsError(f"{what} {path}: not readable by this user")


def server_context(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    """The TLS context for a certificate (chain) and key; None when neither is given."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        given, missing = (
            ("--certfile", "--keyfile") if keyfile is None else ("--keyfile", "--certfile")
        )
        named = certfile if keyfile is None else keyfile
        raise TlsSettingsError(f"{given} {named} needs {missing} too")
    _readable(certfile, "certificate file")
    _readable(keyfile, "key file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:  # not PEM, a wrong key, an encrypted key...
        raise TlsSettingsError(
            f"certificate file {certfile} with key file {keyfile}: {exc.reason or exc}"
        ) from None
    return context


class PeerAddresses:
    """Clients' addresses by the loopback port their connection to waitress comes from.

    As WSGI middleware it puts the client's address in REMOTE_ADDR (the access log's), in
    place of the front's loopback address; other connections are left as they are.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app
        self._by_port: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def add(self, local_port: int, peer: tuple[Any, ...]) -> None:
        """Remember who is behind the front's connection from `local_port`."""
        with self._lock:
            self._by_port[str(local_port)] = (str(peer[0]), str(peer[1]))

    def remove(self, local_port: int) -> None:
        """Forget a closed connection."""
        with self._lock:
            self._by_port.pop(str(local_port), None)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REMOTE_ADDR") == "127.0.0.1":
            with self._lock:
                peer = self._by_port.get(environ.get("REMOTE_PORT", ""))
            if peer:
                environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = peer
        return self.app(environ, start_response)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, waiting for the other side to take each chunk (no unbounded buffer)."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():  # TCP to waitress: a half-close; TLS has none
            writer.write_eof()
    except (ConnectionError, ssl.SSLError, OSError):
        pass


class TlsFront:
    """TLS on (host, port), each connection relayed to waitress on 127.0.0.1:`upstream_port`."""

    def __init__(
        self,
        context: ssl.SSLContext,
        host: str,
        port: int,
        upstream_port: int,
        peers: PeerAddresses,
        connection_limit: int,
    ) -> None:
        self.context, self.host, self.port = context, host, port
        self.upstream_port, self.peers = upstream_port, peers
        self.connection_limit, self.active = connection_limit, 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen (errors such as a port in use are raised here) and serve in a thread."""
        self._server = self._loop.run_until_complete(
            asyncio.start_server(
                self._relay,
                self.host,
                self.port,
                ssl=self.context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                limit=CHUNK,
            )
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tls-front", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop listening and the loop (open relays are dropped)."""
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        if self.active >= self.connection_limit:
            # As waitress does at its limit, but closing at once rather than leaving the
            # client in the listen backlog with its handshake done.
            log.warning("TLS connection from %s dropped: %d open", peer[0], self.active)
            writer.close()
            return
        self.active += 1
        local_port = 0
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            local_port = up_writer.get_extra_info("sockname")[1]
            self.peers.add(local_port, peer)
            upload = asyncio.ensure_future(_pump(reader, up_writer))
            download = asyncio.ensure_future(_pump(up_reader, writer))
            try:
                # waitress closing (after an answer, or an idle connection after its channel
                # timeout) ends the client's connection too; the client's end of sending is
                # passed on as a half-close, and waitress's answer still comes back.
                await download
            finally:
                upload.cancel()
                up_writer.close()
        except OSError as exc:
            log.warning("TLS relay for %s to waitress failed: %s", peer[0], exc)
        finally:
            self.active -= 1
            if local_port:
                self.peers.remove(local_port)
            writer.close()
