"""Every Markdown file cited in the repository's code, tests, configs and docs exists, with its anchor.

A citation is any token that is a path ending in ``.md``, optionally followed by ``#anchor``, in a
text file under
``hac_tf/``, ``tools/``, ``tests/``, ``docs/``, ``configs/`` or in ``README.md`` (URLs are
skipped). The path resolves against the repository root or, as a Markdown link does, against the
citing file's folder. An anchor must be an explicit ``<a id="...">`` of the cited file or the
GitHub slug of one of its headings. Same-file links ``](#anchor)`` in Markdown files are checked
the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
SCANNED_DIRS: Tuple[str, ...] = ("hac_tf", "tools", "tests", "docs", "configs")
SCANNED_FILES: Tuple[str, ...] = ("README.md",)
SKIPPED_DIRS = {"__pycache__", ".pytest_cache"}

# a path ending in .md (optionally ./ or ../ first), not glued to a longer word, and an optional #anchor
CITATION = re.compile(r"(?<![\w./-])((?:\.\.?/)*\w[\w./-]*\.md)(?![\w])(?:#([\w-]+))?")
SAME_FILE_LINK = re.compile(r"\]\(#([\w-]+)\)")
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']""")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def heading_slug(text: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML such as <a id=...></a>
    text = re.sub(r"[`*_]", "", text.lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors_of(markdown: str) -> Set[str]:
    """Explicit ``<a id/name>`` anchors plus heading slugs (duplicates get -1, -2, ...)."""
    anchors = set(EXPLICIT_ANCHOR.findall(markdown))
    seen: Dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            slug = heading_slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _text_files(root: Path, dirs: Tuple[str, ...], files: Tuple[str, ...]) -> Iterator[Path]:
    """Files under ``dirs`` and the named ``files``, each real file once (``configs`` may be a
    symlink into the package)."""
    seen: Set[Path] = set()
    candidates = [p for name in dirs for p in sorted((root / name).rglob("*"))]
    for path in candidates + [root / name for name in files]:
        if (path.is_file() and path.resolve() not in seen
                and not SKIPPED_DIRS.intersection(path.relative_to(root).parts)):
            seen.add(path.resolve())
            yield path


def _read_text(path: Path) -> Optional[str]:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def broken_citations(root: Path, dirs: Tuple[str, ...] = SCANNED_DIRS,
                     files: Tuple[str, ...] = SCANNED_FILES) -> List[str]:
    """``file:line: citation (reason)`` for every citation whose file or anchor is missing."""
    anchor_cache: Dict[Path, Set[str]] = {}

    def anchors(path: Path) -> Set[str]:
        if path not in anchor_cache:
            anchor_cache[path] = anchors_of(path.read_text(encoding="utf-8"))
        return anchor_cache[path]

    problems = []
    for path in _text_files(root, dirs, files):
        text = _read_text(path)
        if text is None:
            continue
        where = path.relative_to(root)
        for number, line in enumerate(text.splitlines(), start=1):
            line = URL.sub(" ", line)
            for match in CITATION.finditer(line):
                cited, anchor = match.group(1), match.group(2)
                target = next((c for c in (root / cited, path.parent / cited) if c.is_file()), None)
                if target is None:
                    problems.append(f"{where}:{number}: {match.group(0)} (no such file)")
                elif anchor and anchor not in anchors(target):
                    problems.append(f"{where}:{number}: {match.group(0)} (no anchor #{anchor} in "
                                    f"{target.relative_to(root)})")
            if path.suffix == ".md":
                for anchor in SAME_FILE_LINK.findall(line):
                    if anchor not in anchors(path):
                        problems.append(f"{where}:{number}: #{anchor} (no such anchor in this file)")
    return problems


def test_every_cited_markdown_file_and_anchor_exists():
    problems = broken_citations(ROOT)
    assert not problems, "broken Markdown citations:\n" + "\n".join(problems)


def test_checker_reports_missing_files_and_anchors(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "pkg").mkdir()
    md = ".md"  # spelled apart so that this file cites nothing itself
    (tmp_path / "docs" / f"GUIDE{md}").write_text(
        "# Guide\n\n<a id=\"setup\"></a>\n## 2. Run it, twice!\n```\n# not a heading\n```\n"
        "See [setup](#setup) and [gone](#gone).\n", encoding="utf-8")
    (tmp_path / "pkg" / "mod.py").write_text(
        f'"""See docs/GUIDE{md}#setup, docs/GUIDE{md}#2-run-it-twice, ../docs/GUIDE{md}.\n'
        f"Broken: GUIDE{md} (bare), docs/GUIDE{md}#not-a-heading, docs/NOTES{md}#setup,\n"
        f'https://example.org/NOTES{md} is a URL."""\n', encoding="utf-8")
    problems = broken_citations(tmp_path, dirs=("pkg", "docs"), files=())
    assert problems == [
        f"pkg/mod.py:2: GUIDE{md} (no such file)",
        f"pkg/mod.py:2: docs/GUIDE{md}#not-a-heading (no anchor #not-a-heading in docs/GUIDE{md})",
        f"pkg/mod.py:2: docs/NOTES{md}#setup (no such file)",
        f"docs/GUIDE{md}:8: #gone (no such anchor in this file)",
    ]
