"""What a fetch returns, and the error for an HTTP status: plain data, no I/O.

Kept apart from :mod:`anklume.resolve.http` so the pure parsers can name these types
without importing urllib.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from anklume.errors import SourceError


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive response headers (repeated headers joined by ", ")."""

    def __init__(self, items: Mapping[str, str] | list[tuple[str, str]] = ()):
        pairs = items.items() if isinstance(items, Mapping) else items
        merged: dict[str, str] = {}
        for name, value in pairs:
            low = name.lower()
            merged[low] = f"{merged[low]}, {value}" if low in merged else value
        self._items = merged

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class Fetched:
    """One successful GET: the exact body, the headers, and where it ended up."""

    body: bytes
    headers: Headers
    urls: tuple[str, ...]  # the request URL, then each redirect target

    @property
    def final_url(self) -> str:
        """The URL the body was finally read from, after redirects."""
        return self.urls[-1]


class HttpStatusError(SourceError):
    """The source answered with an HTTP status other than 200 (``status`` says which)."""

    def __init__(self, message: str, hint: str | None, status: int):
        super().__init__(message, hint)
        self.status = status
