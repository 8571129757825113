"""Which local image files a command means: those named, plus the images under each folder."""

from __future__ import annotations

import fnmatch
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


def _matches(path: Path, pattern: str | None) -> bool:
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    return pattern is None or fnmatch.fnmatchcase(path.name.lower(), pattern.lower())


def expand_paths(
    paths: list[Path], recursive: bool = True, pattern: str | None = None
) -> list[Path]:
    """Files named explicitly, plus the images under each folder (sorted, no duplicates).

    Raises FileNotFoundError for a path that does not exist.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for path in paths:
        if path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            for p in sorted(found):
                if p.is_file() and _matches(p, pattern):
                    add(p)
        elif path.is_file():
            add(path)
        else:
            raise FileNotFoundError(str(path))
    return out
