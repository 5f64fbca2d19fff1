"""The clock and id generator behind every span, swappable for deterministic tests."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

now_ns: Callable[[], int] = time.time_ns
monotonic: Callable[[], float] = time.monotonic


class SwappableIdGenerator(IdGenerator):
    """Delegates to a replaceable generator (random by default)."""

    def __init__(self) -> None:
        self.delegate: IdGenerator = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self.delegate.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.delegate.generate_trace_id()


class SequentialIdGenerator(IdGenerator):
    """Ids 1, 2, 3, ... (trace and span ids counted separately)."""

    def __init__(self) -> None:
        self._span = 0
        self._trace = 0

    def generate_span_id(self) -> int:
        self._span += 1
        return self._span

    def generate_trace_id(self) -> int:
        self._trace += 1
        return self._trace


class SeededIdGenerator(IdGenerator):
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1
