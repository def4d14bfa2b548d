"""`python -m server`: run the data server and results sink on waitress."""

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

from waitress import serve

from . import create_app
from .config import ENV_PREFIX, waitress_options

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


def public_url_for(host: str, port: int, public_url: str | None) -> str:
    """What workers must use: given, else the bind address (the LAN address for 0.0.0.0)."""
    if public_url:
        return public_url.rstrip("/")
    if host in ("0.0.0.0", "::"):
        host = lan_address()
    elif ipaddress.ip_address(host).version == 6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the server and print the URLs workers need."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    token, token_source = load_admin_token(args.admin_token_file)
    url = public_url_for(args.host, args.port, args.public_url)
    try:
        app = create_app({"DATA_DIR": args.data_dir, "DATABASE": args.db, "ADMIN_TOKEN": token})
    except ValueError as exc:  # a setting refused (a short admin token...): said in one line
        sys.stderr.write(f"python -m server: error: {exc}\n")
        return 2
    print(f" * Serving data on: {url}/datasets/<name>?token=<run token>", flush=True)
    print(f" * DCP results endpoint: {url}/dcp-results/<run_id>?token=<run token>", flush=True)
    print(f" * Admin token: {token_source}", flush=True)
    print(f" * Listening on {args.host}:{args.port} (waitress)", flush=True)
    serve(app, host=args.host, port=args.port, threads=args.threads, **waitress_options(app))
    return 0


if __name__ == "__main__":
    sys.exit(main())
