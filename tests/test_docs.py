"""The documentation's relative links lead somewhere: every relative Markdown link in the
README, ``docs/``, the examples' READMEs, ``bench/README.md``, ``ARCHITECTURE.md`` and the
roles' README names a file or folder that exists, and every ``#anchor`` (in the same page or
``other.md#anchor``) is the slug of a heading of the target page, by GitHub's rule: the
heading's text lowercased, every character but letters, digits, ``-``, ``_`` and spaces
dropped, each space turned into ``-``; the second heading with the same slug gets ``-1``, the
third ``-2``.  Links to ``http(s):``, ``mailto:`` and other schemes are not followed.

Pure: reads files of the repository, nothing else."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ["README.md", "bench/README.md"]
OPTIONAL = ["ARCHITECTURE.md", "anklume/provision/roles/README.md"]


def doc_files() -> list[Path]:
    files = [ROOT / name for name in REQUIRED]
    files += [ROOT / name for name in OPTIONAL if (ROOT / name).is_file()]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "examples").rglob("README.md"))
    return files


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); one level of brackets inside the text
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)=[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                continue
            lines.append((number, line))
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                and not line.strip()[len(m.group(1)):].strip():
            fence = None
    return lines


def heading_text(raw: str) -> str:
    """What GitHub renders of a heading's Markdown: code spans' content, links' text, no
    emphasis markers, no HTML tags, backslash escapes resolved."""
    parts, last = [], 0
    for m in CODE_SPAN.finditer(raw):
        parts.append(_inline_text(raw[last:m.start()]))
        parts.append(m.group(2).strip() if m.group(2).strip() else m.group(2))
        last = m.end()
    parts.append(_inline_text(raw[last:]))
    return "".join(parts).strip()


def _inline_text(text: str) -> str:
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("*", "")
    return re.sub(r"\\(.)", r"\1", text)


def slug(text: str) -> str:
    """GitHub's anchor for a heading's rendered text (before duplicates are numbered)."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives ``path``: its headings' slugs, numbered when repeated, and
    explicit ``<a id=...>``/``<a name=...>``."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    previous = ""
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        text = None
        if m := ATX.match(line):
            text = m.group(2) or ""
        elif SETEXT.match(line) and previous.strip() and not ATX.match(previous) \
                and not previous.lstrip().startswith(("|", "-", "*", "+", ">")):
            text = previous.strip()
        if text is not None:
            base = slug(heading_text(text))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
        previous = line
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link outside code blocks and code spans; a link's text may run
    over several lines of its paragraph."""
    result = []
    lines = prose_lines(path.read_text(encoding="utf-8"))
    block: list[tuple[int, str]] = []
    for number, line in lines + [(0, "")]:
        if line.strip() and (not block or number == block[-1][0] + 1):
            block.append((number, line))
            continue
        if block:
            starts, text = [], ""
            for n, ln in block:
                starts.append((len(text), n))
                text += CODE_SPAN.sub(lambda m: "code", ln) + "\n"
            for m in INLINE_LINK.finditer(text):
                at = max(n for offset, n in starts if offset <= m.start())
                result.append((at, m.group(1)))
            for offset, n in starts:
                if m := REFERENCE_DEF.match(text[offset:]):
                    result.append((n, m.group(1)))
        block = [(number, line)] if line.strip() else []
    return [(n, t[1:-1] if t.startswith("<") else t) for n, t in result]


def broken_links(path: Path) -> list[str]:
    problems = []
    cache: dict[Path, set[str]] = {}
    for number, target in links(path):
        if SCHEME.match(target):
            continue
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        file_part, _, fragment = target.partition("#")
        file_part = unquote(file_part)
        if not file_part:
            dest = path
        elif file_part.startswith("/"):
            dest = ROOT / file_part.lstrip("/")
        else:
            dest = path.parent / file_part
        if not dest.exists():
            problems.append(f"{where}: no such file or folder {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
            continue
        if not fragment:
            continue
        if dest.is_dir() or dest.suffix.lower() != ".md":
            continue  # line anchors (#L10) of other files are GitHub's business
        if dest.resolve() not in cache:
            cache[dest.resolve()] = anchors(dest)
        if unquote(fragment) not in cache[dest.resolve()]:
            problems.append(f"{where}: no heading of {dest.resolve().relative_to(ROOT)} has the anchor #{fragment}")
    return problems


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    assert broken_links(path) == []


# The checker itself.

@pytest.mark.parametrize(("heading", "expected"), [
    ("What `build` does not do yet", "what-build-does-not-do-yet"),
    ("`domains.<d>.machines.<name>`", "domainsdmachinesname"),
    ("Orphans and `--prune`", "orphans-and---prune"),
    ("6. Apply and provision (planned)", "6-apply-and-provision-planned"),
    ("Référence de `infra.yml`", "référence-de-infrayml"),
    ("**New** [link](x.md) <b>x</b> a_b", "new-link-x-a_b"),
    ("Quick start (two commands)", "quick-start-two-commands"),
])
def test_slug_follows_github(heading: str, expected: str) -> None:
    assert slug(heading_text(heading)) == expected


def test_checker_finds_broken_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Title\n\n## Same\n\n## Same\n\nSetext\n------\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#title) [ok](other.md#same-1) [ok](other.md#setext) [ok](#page) [ok](other.md)\n"
        "[web](https://example.org/x.md#nope) [mail](mailto:a@b.c) `[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        "[bad file](missing.md) [bad anchor](other.md#same-2) [bad here](#nope) [a link\n"
        "over two lines](split.md)\n\n"
        "[ref]: other.md#gone\n",
        encoding="utf-8")
    problems = broken_links(page)
    assert [p.split(": ", 2)[1] for p in problems] == [
        "missing.md", "other.md#same-2", "#nope", "split.md", "other.md#gone"]
    assert problems[3].startswith("page.md:8: ")  # where the link starts
