"""Where rlhfkit keeps its caches and where the shared third-party data sets live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """Cache folder: ``$RLHFKIT_HOME`` if set, else the user's cache dir (``~/.cache/rlhfkit``)."""
    env = os.environ.get("RLHFKIT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rlhfkit"


def shared_data_dir() -> Path:
    """Third-party data (HH-RLHF harmless, Alpaca seeds): ``$RLHFKIT_DATA`` or ``../shared/data``.

    The data is never copied into the repository; callers must handle its absence.
    """
    env = os.environ.get("RLHFKIT_DATA")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT.parent / "shared" / "data"
