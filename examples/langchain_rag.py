"""A LangChain RAG chain (retriever -> prompt -> chat model -> parser), traced with ``flowtel.autolog()``.

    python examples/langchain_rag.py ["Which city is the capital of France?"]

Needs ``langchain-core`` and ``langchain-openai``. With ``OPENAI_API_KEY`` set the chat model is
the real API (model: ``OPENAI_MODEL``, default ``gpt-4o-mini``); without it, a local scripted
OpenAI-compatible endpoint (the one the test suite uses), fully offline.

``flowtel.autolog()`` switches on the LangChain and OpenAI integrations together: the chain is one
span tree (CHAIN -> RETRIEVER with its documents, CHAIN for the prompt, CHAT_MODEL, CHAIN for the
parser), and the OpenAI request the chat model makes is that same CHAT_MODEL span -- not a second
one -- so the trace's token usage counts it once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flowtel

flowtel.autolog()

from langchain_core.documents import Document  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402

CORPUS = [
    Document(page_content="Paris is the capital and largest city of France.", metadata={"source": "atlas"}, id="1"),
    Document(page_content="Lyon is France's third-largest city, known for its cuisine.", metadata={"source": "guide"},
             id="2"),
    Document(page_content="Berlin is the capital of Germany.", metadata={"source": "atlas"}, id="3"),
]
PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer in one sentence using only this context:\n{context}"),
    ("user", "{question}"),
])


class KeywordRetriever(BaseRetriever):
    """Ranks documents by how many (longer) words they share with the question."""

    documents: list[Document]
    k: int = 2

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        words = {w.strip("?.,").lower() for w in query.split() if len(w) > 3}
        scored = [(len(words & {w.strip(".,'s").lower() for w in d.page_content.split()}), d) for d in self.documents]
        return [d for score, d in sorted(scored, key=lambda pair: -pair[0]) if score][: self.k]


@contextlib.contextmanager
def chat_model() -> Iterator[Any]:
    """``ChatOpenAI`` on the real API when ``OPENAI_API_KEY`` is set, else on the local endpoint."""
    from langchain_openai import ChatOpenAI

    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    if os.environ.get("OPENAI_API_KEY"):
        yield ChatOpenAI(model=model)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._servers.llm import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        server.enqueue_openai_chat(
            content="Paris is the capital of France.", usage={"prompt_tokens": 58, "completion_tokens": 8}
        )
        print(f"(offline: scripted OpenAI-compatible endpoint at {server.openai_base_url})")
        yield ChatOpenAI(model=model, base_url=server.openai_base_url, api_key="sk-offline-demo", max_retries=0)


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "Which city is the capital of France?"
    retriever = KeywordRetriever(documents=CORPUS)
    format_docs = RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs), name="format_docs")
    with chat_model() as llm:
        inputs = {"context": retriever | format_docs, "question": RunnablePassthrough()}
        chain = inputs | PROMPT | llm | StrOutputParser()
        print(chain.invoke(question))
    flowtel.flush()
    trace = flowtel.get_trace(flowtel.get_last_active_trace_id() or "")
    if trace is None:
        return
    depth: dict[str, int] = {}
    print(f"\ntrace {trace.info.trace_id}  tokens={trace.info.trace_metadata.get('mlflow.trace.tokenUsage')}")
    for span in sorted(trace.data.spans, key=lambda s: s.start_time_ns):
        depth[span.span_id] = depth.get(span.parent_id or "", -1) + 1
        print(f"{'  ' * depth[span.span_id]}- {span.name} [{span.span_type}]")


if __name__ == "__main__":
    main()
