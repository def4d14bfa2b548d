"""`python -m server`: run the data server and results sink on waitress (HTTPS with a certificate)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import socket
import stat
import sys
from pathlib import Path

from waitress import create_server

from . import create_app
from .config import ENV_PREFIX, waitress_options
from .tls import PeerAddresses, TlsFront, server_context

log = logging.getLogger("server")


def lan_address() -> str:
    """This machine's LAN address, from the routing table (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def load_admin_token(path: Path) -> tuple[str, str]:
    """The admin token from the environment, else from `path`, created once (mode 0600)."""
    variable = f"{ENV_PREFIX}_ADMIN_TOKEN"
    from_env = os.environ.get(variable)
    if from_env:
        return from_env, f"environment variable {variable}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "admin token file %s is open to group or others (mode %o): chmod 600 it", path, mode
        )
    return path.read_text().strip(), str(path)


def public_url_for(host: str, port: int, public_url: str | None, scheme: str = "http") -> str:
    """What workers must use: given, else the bind address (the LAN address for 0.0.0.0)."""
    if public_url:
        return public_url.rstrip("/")
    if host in ("0.0.0.0", "::"):
        host = lan_address()
    elif ipaddress.ip_address(host).version == 6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--public-url", help="URL workers use to reach this server")
    parser.add_argument("--data-dir", default="var/data", type=Path)
    parser.add_argument("--db", default="var/results.sqlite3", type=Path)
    parser.add_argument("--admin-token-file", default="var/admin-token", type=Path)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument(
        "--certfile", type=Path, help="PEM certificate (chain) to serve HTTPS with; needs --keyfile"
    )
    parser.add_argument("--keyfile", type=Path, help="PEM private key of --certfile (unencrypted)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the server and print the URLs workers need."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        tls = server_context(args.certfile, args.keyfile)
        if tls and args.public_url and not args.public_url.startswith("https://"):
            raise ValueError(f"--public-url {args.public_url} must be https:// with --certfile")
    except ValueError as exc:  # checked before anything is written (token file, database)
        return _refuse(exc)
    token, token_source = load_admin_token(args.admin_token_file)
    url = public_url_for(args.host, args.port, args.public_url, "https" if tls else "http")
    try:
        app = create_app({"DATA_DIR": args.data_dir, "DATABASE": args.db, "ADMIN_TOKEN": token})
    except ValueError as exc:  # a setting refused (a short admin token...): said in one line
        return _refuse(exc)
    options = waitress_options(app)
    if tls is None:
        server = create_server(app, host=args.host, port=args.port, threads=args.threads, **options)
        listening = f"{args.host}:{args.port} (waitress)"
    else:
        # waitress on a loopback port of its own, the TLS front on the given address.
        peers = PeerAddresses(app)
        server = create_server(
            peers, host="127.0.0.1", port=0, threads=args.threads, url_scheme="https", **options
        )
        front = TlsFront(
            tls, args.host, args.port, server.effective_port, peers, options["connection_limit"]
        )
        try:
            front.start()
        except OSError as exc:  # the port in use, an address not on this machine
            server.close()
            return _refuse(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        listening = f"{args.host}:{front.port} (TLS, relayed to waitress on 127.0.0.1:{server.effective_port})"
    print(f" * Serving data on: {url}/datasets/<name>?token=<run token>", flush=True)
    print(f" * DCP results endpoint: {url}/dcp-results/<run_id>?token=<run token>", flush=True)
    print(f" * Admin token: {token_source}", flush=True)
    print(f" * Listening on {listening}", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


def _refuse(exc: Exception | str) -> int:
    sys.stderr.write(f"python -m server: error: {exc}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
