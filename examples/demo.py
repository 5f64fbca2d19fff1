"""The `make demo` agent: a small research assistant traced into flowtel's embedded store.

Plain Python functions stand in for the LLM, the retriever and a tool, so it runs offline with
no API keys. Run it, then `flowtel traces list` / `flowtel traces show latest`.
"""

from __future__ import annotations

import flowtel
from flowtel import SpanType

DOCUMENTS = {
    "paris": "Paris is the capital of France. It has about 2.1 million inhabitants.",
    "berlin": "Berlin is the capital of Germany. It has about 3.7 million inhabitants.",
}


@flowtel.trace(span_type=SpanType.RETRIEVER)
def retrieve(query: str, k: int = 2) -> list[dict]:
    hits = [text for key, text in DOCUMENTS.items() if key in query.lower()]
    return [{"page_content": text, "metadata": {"source": "wiki"}, "id": None} for text in hits[:k]]


@flowtel.trace(span_type=SpanType.TOOL)
def population_ratio(a: float, b: float) -> float:
    return round(a / b, 2)


@flowtel.trace(span_type=SpanType.CHAT_MODEL)
def chat(messages: list[dict], model: str = "demo-model") -> dict:
    span = flowtel.get_current_active_span()
    if span is not None:
        span.set_attributes({
            "mlflow.message.format": "openai",
            "mlflow.llm.model": model,
            "mlflow.chat.tokenUsage": {"input_tokens": 42, "output_tokens": 12, "total_tokens": 54},
        })
    answer = "Berlin has about 1.76 times as many inhabitants as Paris."
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}


@flowtel.trace(span_type=SpanType.AGENT)
def research_agent(question: str) -> str:
    flowtel.update_current_trace(tags={"app": "demo"}, session_id="session-1", user="alice")
    docs = retrieve("paris berlin " + question)
    ratio = population_ratio(3.7, 2.1)
    reply = chat([
        {"role": "system", "content": "Answer from the documents."},
        {"role": "user", "content": f"{question}\n\n" + "\n".join(d["page_content"] for d in docs)
         + f"\n\nratio={ratio}"},
    ])
    return reply["choices"][0]["message"]["content"]


@flowtel.trace(span_type=SpanType.AGENT)
def failing_agent(question: str) -> str:
    raise TimeoutError(f"upstream model timed out for {question!r}")


if __name__ == "__main__":
    print(research_agent("How many more people live in Berlin than in Paris?"))
    try:
        failing_agent("What is the capital of Spain?")
    except TimeoutError as exc:
        print(f"(failing_agent raised {exc!r}; its trace is recorded as ERROR)")
    flowtel.flush()
