"""Retrying: which HTTP answers are worth retrying, ``Retry-After``, and the one backoff.

The delivery pipeline retries whole batches with :class:`RetryPolicy`; exporters that must
retry in-line (an OTel ``SpanExporter`` has no pipeline behind it) use :func:`retry_until`,
over the same policy.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "RETRYABLE_HTTP_STATUS",
    "Attempt",
    "RetryPolicy",
    "is_retryable_status",
    "parse_retry_after",
    "retry_until",
]

RETRYABLE_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Statuses a request may succeed after: timeouts, too early, rate limits, server/gateway errors
(the OTLP specification's list plus 408/425/500)."""


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP error answer with this status is worth sending again."""
    return status in RETRYABLE_HTTP_STATUS


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None when
    absent or unparseable. Never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for retryable export failures.

    Args:
        max_attempts: Attempts per batch before it is spooled (or dropped without a spool).
        initial_backoff: Delay after the first failure, in seconds; doubles per failure.
        max_backoff: Longest delay between attempts (and between probes of a down destination).
        max_retry_after: Upper bound for a destination's ``Retry-After`` (a broken server
            asking for a day must not stall delivery for a day).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 600.0

    def delay(self, failures: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (``failures >= 1``).

        ``Retry-After`` wins when the destination sent one. Otherwise "equal jitter": a random
        value between half and all of the exponential step, so clients that failed together
        do not come back together, and none retries immediately.
        """
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_retry_after)
        step = self.initial_backoff * 2.0 ** min(max(failures - 1, 0), 30)
        cap = min(self.max_backoff, step)
        return (rng or random).uniform(cap / 2, cap)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one try: ``problem`` is None on success, else why it failed."""

    problem: str | None
    retryable: bool = False
    retry_after: float | None = None


def retry_until(
    attempt: Callable[[float], Attempt],
    *,
    deadline: float,
    policy: RetryPolicy,
    stop: threading.Event,
    gave_up_after: float | None = None,
) -> str | None:
    """Call ``attempt(remaining_seconds)`` until it succeeds, fails for good, or the next wait
    would pass ``deadline`` (``time.monotonic()``) or ``stop`` is set (shutdown). Blocks.

    Returns:
        None on success, else the last problem (with "gave up after N s" when time ran out).
    """
    failures = 0
    while True:
        outcome = attempt(max(deadline - time.monotonic(), 0.1))
        if outcome.problem is None or not outcome.retryable:
            return outcome.problem
        failures += 1
        wait = policy.delay(failures, outcome.retry_after)
        if time.monotonic() + wait > deadline or stop.wait(wait):
            suffix = f" (gave up after {gave_up_after:g} s)" if gave_up_after is not None else ""
            return f"{outcome.problem}{suffix}"
