"""The traced workload the delivery benchmarks share: an agent span with 9 tool children."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHILDREN = 9
QUESTION = "What is the weather in Paris today, and should I take an umbrella? " * 2
ANSWER = "It is sunny in Paris with 21 degrees; no umbrella needed. " * 3


def flowtel_agent() -> tuple[Callable[[int], Any], Callable[[], dict[str, Any]]]:
    """(call, flush): ``call(i)`` makes trace ``i`` of 10 spans; ``flush()`` waits for delivery
    and returns the first destination's sent / dropped counts."""
    import flowtel

    @flowtel.trace(span_type="TOOL")
    def tool(i: int, j: int) -> str:
        return f"{ANSWER} ({i}.{j})"

    @flowtel.trace(span_type="AGENT")
    def agent(i: int, question: str) -> dict[str, Any]:
        return {"answer": [tool(i, j) for j in range(CHILDREN)][-1]}

    def flush() -> dict[str, Any]:
        flowtel.flush(timeout=3600)
        stats = flowtel.get_delivery_stats()["destinations"][0]
        return {"sent": stats["sent"], "dropped": stats["dropped"]}

    return (lambda i: agent(i, QUESTION)), flush
