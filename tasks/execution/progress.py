"""Progress shown on a terminal."""

from __future__ import annotations

import sys


def terminal_progress(label: str, done: int, total: int, width: int = 30) -> None:
    """A progress bar on stderr, only when it is a terminal."""
    if not sys.stderr.isatty():
        return
    filled = width * done // max(1, total)
    end = "\n" if done >= total else ""
    sys.stderr.write(
        f"\r{label[-40:]} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}"
    )
    sys.stderr.flush()
