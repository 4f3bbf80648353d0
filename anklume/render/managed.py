"""The managed section of a generated file: what anklume owns, and what it leaves alone.

A generated file is ``---``, the managed block (``BEGIN``, ``NOTICE``, the YAML,
``END``) and then whatever the user adds.  Only the first ``BEGIN .. END`` region
is ever replaced; every other byte is the user's.  Pure: no I/O.
"""

from __future__ import annotations

import re

import yaml

from anklume.errors import AnklumeError

MANAGED_BEGIN = "# === MANAGED BY infra.yml ==="
MANAGED_NOTICE = "# Do not edit this section — it will be overwritten by `anklume build`"
#: The original's notice; only BEGIN and END matter when reading a file back.
V1_NOTICE = "# Do not edit this section — it will be overwritten by `make sync`"
MANAGED_END = "# === END MANAGED ==="
NEW_FILE_TAIL = "\n\n# Your custom variables below:\n"

# A first document-start line (``---``, optionally followed by a comment), after
# nothing but blank lines, comments and directives.
_DOC_START_RE = re.compile(r"\A(?:[ \t]*(?:#[^\n]*)?\r?\n|%[^\n]*\n)*---[ \t]*(?:#[^\n]*)?\r?(?:\n|\Z)")


class UnmergeableFile(AnklumeError):
    """An existing file without a managed section cannot take one and stay one YAML mapping."""


def managed_block(body: str) -> str:
    """``BEGIN\\nNOTICE\\n<yaml>\\nEND`` for the YAML text ``body``."""
    return f"{MANAGED_BEGIN}\n{MANAGED_NOTICE}\n{body.rstrip()}\n{MANAGED_END}"


def merge_managed(existing: str | None, block: str) -> str:
    """The new text of a file whose managed section becomes ``block``.

    - no file: ``---``, the block, and a comment inviting the user's variables;
    - a file with a managed section: only the first section is replaced;
    - a file without one: the block goes at the top of its (single) document,
      right after its ``---`` line if it has one.  Unlike the original, this never
      makes a second YAML document; a file that is not a mapping (a list, a flow
      mapping, several documents) raises ``UnmergeableFile`` rather than being
      turned into invalid YAML.
    """
    if existing is None:
        return f"---\n{block}{NEW_FILE_TAIL}"
    span = _managed_span(existing)
    if span is not None:
        return existing[:span[0]] + block + existing[span[1]:]
    if MANAGED_BEGIN in existing:
        raise UnmergeableFile(
            f"the file has a '{MANAGED_BEGIN}' line but no '{MANAGED_END}' line",
            "put the end marker back after the managed section, or delete the begin marker")
    start = _DOC_START_RE.match(existing)
    if start is not None:
        head, rest = existing[:start.end()], existing[start.end():]
        if not head.endswith("\n"):
            head += "\n"
        merged = f"{head}{block}\n\n{rest}"
    else:
        merged = f"---\n{block}\n\n{existing}"
    _check_one_mapping(existing, merged)
    return merged


def _check_one_mapping(existing: str, merged: str) -> None:
    hint = "the file must hold one YAML mapping (key: value lines); move it aside and build again"
    try:
        docs = list(yaml.safe_load_all(merged))
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        try:
            list(yaml.safe_load_all(existing))
        except yaml.YAMLError:
            raise UnmergeableFile(f"the file is not valid YAML ({problem})", hint) from None
        raise UnmergeableFile(
            f"cannot add the managed section: the result would not be valid YAML ({problem})", hint) from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise UnmergeableFile("cannot add the managed section: the file is not one YAML mapping", hint)


def _managed_span(text: str) -> tuple[int, int] | None:
    """Start and end of the first ``BEGIN .. END`` region (the first END after the first
    BEGIN), or None."""
    start = text.find(MANAGED_BEGIN)
    if start < 0:
        return None
    end = text.find(MANAGED_END, start + len(MANAGED_BEGIN))
    if end < 0:
        return None
    return start, end + len(MANAGED_END)


def extract_managed(text: str) -> str | None:
    """The first managed region, markers included (markers are comments, so the
    region parses as YAML on its own), or None if the file has none."""
    span = _managed_span(text)
    return text[span[0]:span[1]] if span is not None else None
