from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Document:
    """A document returned by a retriever span (``page_content``, ``metadata``, ``id``)."""

    page_content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    @classmethod
    def from_langchain_document(cls, document: Any) -> Document:
        return cls(
            page_content=document.page_content,
            metadata=dict(getattr(document, "metadata", {}) or {}),
            id=getattr(document, "id", None),
        )

    @classmethod
    def from_llama_index_node_with_score(cls, node_with_score: Any) -> Document:
        metadata = dict(node_with_score.metadata or {})
        metadata["score"] = node_with_score.get_score()
        return cls(
            page_content=node_with_score.get_content(), metadata=metadata, id=node_with_score.node_id
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
