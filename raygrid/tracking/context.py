"""MLflow's standard context tags for a grid's runs: source, user, and git commit when there is one.

MLflow sets these itself only for runs started with `mlflow.start_run` in the script that trains;
raygrid creates runs through the client API from the `raygrid run` process, so it sets them: the
UI's "Source", "User" and "Git commit" columns then say which grid file, who, and which commit of
the repository holding the grid file (the grids, and usually the code, are versioned there).
"""
from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

SOURCE_NAME, SOURCE_TYPE, USER = "mlflow.source.name", "mlflow.source.type", "mlflow.user"
GIT_COMMIT = "mlflow.source.git.commit"
# MLflow has no tag for uncommitted changes; without it a commit would claim more than it proves.
GIT_DIRTY = "raygrid.git_dirty"


def context_tags(grid_path: str | Path) -> dict[str, str]:
    """Source (the grid file, type LOCAL), user, and the commit (+ dirty flag) of the git repository around the file."""
    path = Path(grid_path).expanduser().resolve()
    tags = {SOURCE_NAME: str(path), SOURCE_TYPE: "LOCAL"}
    user = _user()
    if user:
        tags[USER] = user
    commit = _git(path.parent, "rev-parse", "HEAD")
    if commit:
        tags[GIT_COMMIT] = commit
        # Only tracked files count: a new untracked grid in a clean repository is not "dirty code".
        changes = _git(path.parent, "status", "--porcelain", "--untracked-files=no")
        if changes is not None:
            tags[GIT_DIRTY] = "true" if changes else "false"
    return tags


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return None


def _git(folder: Path, *args: str) -> str | None:
    """`git -C folder args...` stdout, or None outside a repository / without git (never an error)."""
    if not folder.is_dir():
        return None
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
