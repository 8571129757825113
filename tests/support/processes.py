"""Real processes as /proc sees them: alive or not, and the children a process spawned."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """The process exists and is no zombie (a reaped-later child counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def spawned_children(pid: int) -> list[int]:
    """The multiprocessing children a process spawned (a query worker's text encoder), not
    its resource tracker."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue  # gone meanwhile
            if b"multiprocessing" in argv and b"resource_tracker" not in argv:
                out.append(int(child))
    return out
