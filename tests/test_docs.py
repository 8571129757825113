"""The README and docs/ hold together: every relative link and image resolves to a file in
the repository (and an `#anchor` into a markdown file to one of its headings, slugged as
GitHub slugs them); the README stays a front door (at most 400 lines) and names the test
command that `.ci/run` runs. Plain text checks: no project imports, no services."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 400

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1")
# `](target)` or `](target "title")`: the end of an inline link or image, nested ones too.
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fence = [], None
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0]
            continue
        if fence is not None:
            if opened and opened.group(1)[0] == fence:
                fence = None
            continue
        lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower-cased, punctuation dropped,
    spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("", line)
        targets += INLINE_LINK.findall(line)
        targets += REFERENCE_DEF.findall(line)
    return targets


def broken(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of one page, one line per broken link."""
    problems = []
    for target in links(path):
        if not target or SCHEME.match(target) or target.startswith("//"):
            continue
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        if not file_part:
            resolved = path
        elif file_part.startswith("/"):
            resolved = root / file_part.lstrip("/")
        else:
            resolved = path.parent / file_part
        resolved = resolved.resolve()
        if not resolved.is_relative_to(root) or not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return problems


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    problems = broken(page)
    assert problems == [], "\n".join(problems)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached or not page.is_file():
            continue  # a missing page is reported by test_relative_links_resolve
        reached.add(page)
        for target in links(page):
            file_part = unquote(target.partition("#")[0])
            if file_part and not SCHEME.match(file_part) and file_part.endswith(".md"):
                todo.append((page.parent / file_part).resolve())
    pages = {p.resolve() for p in (ROOT / "docs").rglob("*.md")}
    assert sorted(str(p.relative_to(ROOT)) for p in pages - reached) == []


def test_readme_is_a_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines"
    assert "make test" in text  # what .ci/run runs
    assert "make up" in text


def test_slugs_follow_github() -> None:
    assert slug("The model's options") == "the-models-options"
    assert slug("Bulk generation: many prompts, Gemini's Batch mode, results files, webhooks") == (
        "bulk-generation-many-prompts-geminis-batch-mode-results-files-webhooks"
    )
    assert slug("The HTTP API (v1)") == "the-http-api-v1"
    assert slug("`ASSETRAG_*` settings") == "assetrag_-settings"
    assert slug("Search at library scale: Milvus Lite against a Milvus server") == (
        "search-at-library-scale-milvus-lite-against-a-milvus-server"
    )


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[ok](#title) [bad](#nope) [gone](missing.md) ![img](none.png)\n"
        "`[code](skipped.md)` [web](https://example.com)\n\n```\n[fenced](skipped.md)\n```\n",
        encoding="utf-8",
    )
    assert broken(page, root=tmp_path.resolve()) == [
        "#nope: no heading #nope in page.md",
        "missing.md: no such file",
        "none.png: no such file",
    ]
