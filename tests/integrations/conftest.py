"""The LLM SDK integration tests use the shared fixtures of tests/conftest.py
(``openai_autolog``, ``anthropic_autolog``, ``langchain_autolog``, ``llm_server``)."""
