"""git's conflict markers in a file: where they are, and the sides they separate.

A file git could not merge holds hunks like::

    <<<<<<< HEAD
    our lines
    ||||||| base            (only with merge.conflictStyle diff3 or zdiff3)
    the base's lines
    =======
    their lines
    >>>>>>> feature

``conflict_lines`` says where such hunks are (None when the file has none); ``split_sides``
rebuilds the text of each side: the lines outside the hunks, with each hunk's part of that
side.  The lines outside the hunks already hold the changes git merged on its own, so a side
rebuilt this way is that side *plus* what git merged cleanly from the other one; the exact
sides are the merge stages git keeps in its index (``git show :2:FILE``, ``:3:``), which
callers prefer when they exist.  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

START, BASE, MIDDLE, END = b"<<<<<<<", b"|||||||", b"=======", b">>>>>>>"


def _marker(line: bytes) -> bytes | None:
    """The marker a line is (git writes 7 characters, then a space and a label, or nothing)."""
    body = line.rstrip(b"\r\n")
    head = body[:7]
    if head not in (START, BASE, MIDDLE, END):
        return None
    rest = body[7:]
    if head == MIDDLE:
        return MIDDLE if not rest.strip() else None
    return head if not rest or rest[:1] == b" " else None


@dataclass(frozen=True)
class Sides:
    ours: bytes
    theirs: bytes
    #: The base's text, only when every hunk has its base part (diff3 or zdiff3 style).
    base: bytes | None
    #: 1-based line numbers of the first marker of each hunk.
    hunks: tuple[int, ...]


class MalformedMarkers(ValueError):
    """Markers that do not make whole hunks (one cut short, or out of order)."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


def conflict_lines(data: bytes) -> list[int] | None:
    """The lines (1-based) where conflict hunks start, or None when there is none."""
    if START not in data:
        return None
    try:
        sides = split_sides(data)
    except MalformedMarkers as exc:
        return [exc.line]
    return list(sides.hunks) if sides is not None else None


def split_sides(data: bytes) -> Sides | None:
    """Each side's text, or None when ``data`` holds no conflict hunk; ``MalformedMarkers``
    when markers are there but do not make whole hunks."""
    if START not in data:
        return None
    ours: list[bytes] = []
    theirs: list[bytes] = []
    base: list[bytes] = []
    every_hunk_has_base = True
    hunks: list[int] = []
    state = "common"  # common -> ours [-> base] -> theirs -> common
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        marker = _marker(line)
        if state == "common":
            if marker == START:
                state = "ours"
                hunks.append(number)
                has_base = False
                continue
            if marker is not None:
                raise MalformedMarkers(number, f"{marker.decode()} outside a conflict hunk")
            ours.append(line)
            theirs.append(line)
            base.append(line)
        elif state in ("ours", "base"):
            if marker == BASE and state == "ours":
                state, has_base = "base", True
            elif marker == MIDDLE:
                state = "theirs"
                every_hunk_has_base = every_hunk_has_base and has_base
            elif marker is not None:
                raise MalformedMarkers(number, f"{marker.decode()} where ======= was expected")
            else:
                (ours if state == "ours" else base).append(line)
        else:  # theirs
            if marker == END:
                state = "common"
            elif marker is not None:
                raise MalformedMarkers(number, f"{marker.decode()} where >>>>>>> was expected")
            else:
                theirs.append(line)
    if state != "common":
        raise MalformedMarkers(hunks[-1], "a conflict hunk is not closed (no >>>>>>>)")
    if not hunks:
        return None
    return Sides(ours=b"".join(ours), theirs=b"".join(theirs),
                 base=b"".join(base) if every_hunk_has_base else None, hunks=tuple(hunks))
