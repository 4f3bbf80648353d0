"""Run a call with a bound on its time, so that a test of a hang fails instead of hanging.

    result = within(5, lambda: fetcher.fetch(...))   # returns, or raises what the call raised

The call runs in a daemon thread; when it outlives ``seconds`` the test fails with
"did not finish within N s" (the thread ends when the test's servers stop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def within(seconds: float, call: Callable[[], T]) -> T:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as err:  # noqa: BLE001 (re-raised below, in the test's thread)
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"did not finish within {seconds:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
