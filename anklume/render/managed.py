"""The managed section of a generated file: what anklume owns, and what it leaves alone.

A generated file is ``---``, the managed block (``BEGIN``, ``NOTICE``, the YAML,
``END``) and then whatever the user adds.  Only the ``BEGIN .. END`` region is ever
replaced; every other byte is the user's.  Pure: no I/O.

A marker counts only as a whole line (it may end in blanks or a carriage return):
marker text inside a value (a description) or inside a comment is text.  The
rendered YAML never holds such a line: the dumper indents every continuation line
of a multi-line scalar.  A file has at most one section: a second ``BEGIN``, a
second ``END``, an ``END`` without a ``BEGIN`` above it or a ``BEGIN`` without an
``END`` is refused (``UnmergeableFile``, with the line), never guessed at: each is
what a deleted marker or a pasted section leaves, and guessing would leave stale
managed keys behind the section, overriding the new ones.
"""

from __future__ import annotations

import re

import yaml

from anklume.errors import AnklumeError
from anklume.model.yamlsafe import BoundedLoader

MANAGED_BEGIN = "# === MANAGED BY infra.yml ==="
MANAGED_NOTICE = "# Do not edit this section — it will be overwritten by `anklume build`"
#: The original's notice; only BEGIN and END matter when reading a file back.
V1_NOTICE = "# Do not edit this section — it will be overwritten by `make sync`"
MANAGED_END = "# === END MANAGED ==="
NEW_FILE_TAIL = "\n\n# Your custom variables below:\n"

#: A marker line: the marker at the start of a line, then only blanks (and the ``\\r`` of a
#: CRLF line, left out of the match so that replacing a section keeps the line's ending).
_MARKER_RE = re.compile(rf"^({re.escape(MANAGED_BEGIN)}|{re.escape(MANAGED_END)})[ \t]*(?=\r?$)", re.MULTILINE)
#: A line that may be a top-level key: a plain or quoted name, then ':' (the candidates that
#: ``managed_keys_outside`` then confirms with the YAML parser).
_TOP_KEY_RE = re.compile(r"""^(?:([A-Za-z_][A-Za-z0-9_]*)|'([A-Za-z_][A-Za-z0-9_]*)'|"([A-Za-z_][A-Za-z0-9_]*)")"""
                         r"[ \t]*:(?=[ \t\r]|$)", re.MULTILINE)

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
    - a file with a managed section: only the section is replaced (markers that do not
      make exactly one section raise ``UnmergeableFile``);
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
        docs = list(yaml.load_all(merged, Loader=BoundedLoader))
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        try:
            list(yaml.load_all(existing, Loader=BoundedLoader))
        except yaml.YAMLError:
            raise UnmergeableFile(f"the file is not valid YAML ({problem})", hint) from None
        raise UnmergeableFile(
            f"cannot add the managed section: the result would not be valid YAML ({problem})", hint) from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise UnmergeableFile("cannot add the managed section: the file is not one YAML mapping", hint)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _managed_span(text: str) -> tuple[int, int] | None:
    """Start and end of the ``BEGIN .. END`` region (markers included, the end marker's
    line ending excluded), None when the file has neither marker line; ``UnmergeableFile``
    naming the line when the markers do not make exactly one section."""
    if MANAGED_BEGIN not in text and MANAGED_END not in text:
        return None
    begin = end = None
    for match in _MARKER_RE.finditer(text):  # line numbers are counted only for an error
        if match.group(1) == MANAGED_BEGIN:
            if begin is not None:
                first, line = _line(text, begin.start()), _line(text, match.start())
                raise UnmergeableFile(
                    f"line {line}: the managed section appears twice (lines {first} and {line})",
                    "keep one managed section: delete the other copy, its marker lines included, and build again")
            begin = match
        elif begin is None:
            raise UnmergeableFile(
                f"line {_line(text, match.start())}: a '{MANAGED_END}' line with no '{MANAGED_BEGIN}' line above it",
                f"put the '{MANAGED_BEGIN}' line back where the managed section starts (or delete the "
                "stale section, its end marker included), and build again")
        elif end is not None:
            first, line = _line(text, end.start()), _line(text, match.start())
            raise UnmergeableFile(
                f"line {line}: a second '{MANAGED_END}' line (the first is line {first})",
                "delete the extra end marker and the stale managed keys around it, and build again")
        else:
            end = match
    if begin is None:
        return None
    if end is None:
        raise UnmergeableFile(
            f"line {_line(text, begin.start())}: a '{MANAGED_BEGIN}' line but no '{MANAGED_END}' line after it",
            "put the end marker back after the managed section, or delete the begin marker")
    return begin.start(), end.end()


def extract_managed(text: str) -> str | None:
    """The managed region, markers included (markers are comments, so the region
    parses as YAML on its own), or None if the file has none; ``UnmergeableFile``
    when its markers do not make exactly one section."""
    span = _managed_span(text)
    return text[span[0]:span[1]] if span is not None else None


def managed_keys_outside(text: str, body: str) -> list[tuple[str, int]]:
    """``(key, line)`` of each top-level key of the managed YAML ``body`` that ``text`` also
    sets outside its managed section: YAML readers (Ansible included) keep the last
    value of a repeated key, so such a key below the section overrides the managed one.

    Candidate lines are found by a pattern, then confirmed with the YAML parser (a line of
    a quoted scalar is not a key); a file that does not parse keeps the candidates.
    """
    span = _managed_span(text)
    start, end = span if span is not None else (0, 0)
    keys = _top_keys(body)
    candidates = [(m, name) for m in _TOP_KEY_RE.finditer(text)
                  if not start <= m.start() < end and (name := next(g for g in m.groups() if g)) in keys]
    if not candidates:
        return []
    try:
        found = {}
        for doc in yaml.compose_all(text, Loader=BoundedLoader):
            if isinstance(doc, yaml.MappingNode):
                for key_node, _ in doc.value:
                    at = key_node.start_mark.index
                    if (isinstance(key_node, yaml.ScalarNode) and key_node.value in keys
                            and not start <= at < end):
                        found[at] = key_node.value
    except yaml.YAMLError:
        found = {m.start(): name for m, name in candidates}
    return [(name, _line(text, at)) for at, name in sorted(found.items())]


def _top_keys(body: str) -> set[str]:
    """The top-level keys of rendered YAML: names at the start of a line (the dumper writes
    a key longer than 122 characters as ``? key``: then ask the parser)."""
    keys = {m.group(1) for m in _TOP_KEY_RE.finditer(body) if m.group(1)}
    if body.startswith("? ") or "\n? " in body:
        data = yaml.load(body, Loader=BoundedLoader)
        keys |= {k for k in data if isinstance(k, str)} if isinstance(data, dict) else set()
    return keys
