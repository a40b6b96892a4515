"""Small HTTP helpers: JSON requests to the services, and waiting for a first 200."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.containers import http

from . import BenchError


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """A JSON request that must answer 2xx: its parsed body."""
    status, answer = http(method, url, body, headers)
    if not 200 <= status < 300:
        msg = f"{method} {url} answered {status}: {str(answer)[:500]}"
        raise BenchError(msg)
    return answer


def answers_200(url: str) -> bool:
    """Whether `url` answers 200 now (a refused or failed connection is a no)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:  # refused, reset, or an HTTP error status
        return False


def wait_for_200(
    url: str,
    *,
    timeout: float,
    interval: float = 0.02,
    failed: Callable[[], str | None] = lambda: None,
) -> float:
    """Poll `url` every `interval` seconds: the seconds until its first 200.

    `failed` says why waiting is pointless (the process exited...), or None to keep waiting.
    """
    started = time.perf_counter()
    while not answers_200(url):
        if reason := failed():
            msg = f"{url} will not answer: {reason}"
            raise BenchError(msg)
        if time.perf_counter() - started > timeout:
            msg = f"{url} did not answer 200 within {timeout:g}s"
            raise BenchError(msg)
        time.sleep(interval)
    return time.perf_counter() - started
