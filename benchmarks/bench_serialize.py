"""Micro-benchmark: ``flowtel`` span-attribute serialization vs plain ``json.dumps``.

Run from the repository root::

    python benchmarks/bench_serialize.py

For each case it prints the time per call of ``dump_json`` and of the baseline
``json.dumps(value, ensure_ascii=False)`` (what MLflow calls; pydantic models via ``model_dump()``
like its TraceJSONEncoder), and their ratio (below 1 means flowtel is faster).
The first two cases are the hot-path ones the fast path is designed for; the others show the cost
of the slow path (redaction, non-plain types, structural truncation). Timings are informational only.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowtel.tracing._serialize import dump_json  # noqa: E402


def _chat_payload(messages: int = 20, chars: int = 500) -> dict[str, Any]:
    """An OpenAI-style chat request with ``messages`` messages of ``chars`` characters."""
    text = ("The quick brown fox jumps over the lazy dog. " * (chars // 45 + 1))[:chars]
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i in range(messages)],
        "temperature": 0.2,
        "max_tokens": 512,
    }


def _cases() -> list[tuple[str, object]]:
    """(name, value) pairs; optional-dependency cases are skipped when the library is missing."""
    cases: list[tuple[str, object]] = [
        ("small dict", {"question": "What is the capital of France?", "k": 3}),
        ("chat 20 x 500 chars", _chat_payload()),
        ("chat + api_key (redaction)", {**_chat_payload(), "api_key": "sk-not-a-real-key"}),
        ("2 MB string (truncation)", {"document": "lorem ipsum " * 170_000}),
    ]
    try:
        import pydantic
    except ImportError:
        return cases

    class Message(pydantic.BaseModel):
        role: str
        content: str

    class Request(pydantic.BaseModel):
        model: str
        messages: list[Message]
        temperature: float
        max_tokens: int

    cases.append(("pydantic chat 20 x 500", Request.model_validate(_chat_payload())))
    return cases


def _time_pair(ours: Callable[[], object], base: Callable[[], object], rounds: int = 30) -> tuple[float, float]:
    """Best time per call (microseconds) of two functions, measured in alternating rounds.

    Alternating keeps background load from skewing the ratio; the minimum filters out noise.
    """
    timers = (timeit.Timer(ours), timeit.Timer(base))
    numbers = [max(timer.autorange()[0] // 10, 1) for timer in timers]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, timer in enumerate(timers):
            best[i] = min(best[i], timer.timeit(numbers[i]) / numbers[i] * 1e6)
    return best[0], best[1]


def _mlflow_default(obj: object) -> object:
    """What MLflow's TraceJSONEncoder does for the non-plain values used here."""
    model_dump = getattr(obj, "model_dump", None)
    return model_dump() if callable(model_dump) else str(obj)


def _baseline(value: object) -> str:
    """``json.dumps`` as MLflow calls it; identical to ``json.dumps(value, ensure_ascii=False)`` for plain data."""
    return json.dumps(value, ensure_ascii=False, default=_mlflow_default)


def main() -> None:
    """Print the comparison table."""
    header = f"{'case':<30} {'dump_json us':>13} {'json.dumps us':>14} {'ratio':>7} {'out bytes':>10}"
    print(header)
    print("-" * len(header))
    for name, value in _cases():
        ours, base = _time_pair(lambda v=value: dump_json(v), lambda v=value: _baseline(v))  # type: ignore[misc]
        size = len(dump_json(value).encode("utf-8"))
        print(f"{name:<30} {ours:>13.2f} {base:>14.2f} {ours / base:>7.2f} {size:>10}")


if __name__ == "__main__":
    main()
