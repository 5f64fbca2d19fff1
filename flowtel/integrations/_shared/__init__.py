"""Machinery every LLM SDK integration shares; nothing here knows a provider or imports an SDK.

* ``_context``: tracing state seen by integrations, and "one LLM call, one LLM span" (an integration
  that opens an LLM span marks the context; a provider integration called inside it records nothing).
* ``_call``: the span of one SDK call (:class:`~._call.LLMCall`) and the ``wrapt`` wrappers of sync
  and async SDK methods.
* ``_chat_stream``: a completion rebuilt from OpenAI-shaped chat chunks (OpenAI, LiteLLM...).
* ``_stream``: stream proxies that keep a streaming call's span open while the user reads and end it
  exactly once (consumed, closed, errored, cancelled or garbage-collected), chunks as events.
* ``_patch``: :class:`~._patch.Patcher` installs ``wrapt`` wrappers and restores the originals exactly.
* ``_values``: recorded values: credential scrubbing (``flowtel._redaction``'s one rule), SDK objects
  as JSON data, SDK sentinels dropped.
* ``_normalize``: the MLflow token-usage dict and tool-definition shape every provider maps onto.
* ``_conventions``: chat messages in MLflow's standard (OpenAI-compatible) shape as GenAI semantic
  conventions, for providers (and unknown formats) that record that shape.

A provider's own knowledge (request/response parsing, usage fields, stream events, conventions)
lives in its own package, ``flowtel/integrations/<provider>/``.
"""
