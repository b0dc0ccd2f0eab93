"""`.nodefile/`, made on first use with a `.gitignore` (`*`) that keeps it out of git.
Only os is imported: the no-op path's project cache uses this too."""
from __future__ import annotations

import os


def make(path: str) -> None:
    """Make the state folder `path` (PROJECT/.nodefile) if it is missing, with its .gitignore."""
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    try:
        with open(os.path.join(path, ".gitignore"), "x") as f:
            f.write("*\n")
    except OSError:
        pass  # another process wrote it first, or a read-only place: never a reason to fail
