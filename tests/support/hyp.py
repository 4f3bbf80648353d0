"""How many examples the property-based tests run.

In CI (``CI=true``, or ``ANKLUME_FUZZ=full``) every test runs its full count; on a developer's
machine a tenth of it (at least 5), so that ``pytest -m "not integration"`` stays about a
minute.  ``ANKLUME_FUZZ=full`` asks for the CI counts locally.
"""

from __future__ import annotations

import os


def full_run() -> bool:
    return os.environ.get("ANKLUME_FUZZ") == "full" or os.environ.get("CI", "").lower() == "true"


def examples(n: int) -> int:
    """``n`` in CI, about a tenth of it elsewhere."""
    return n if full_run() else max(5, n // 10)
