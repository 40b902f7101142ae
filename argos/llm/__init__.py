"""The LLM port: a small chat-model interface, the OpenAI-compatible adapter, caching, usage and
budgets, configuration, the local test server, and test doubles."""
