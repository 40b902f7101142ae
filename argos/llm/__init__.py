"""The LLM port and what stands behind it: ``interface`` (the ``ChatModel`` port, completions,
errors, token estimation; the bottom of the package), ``openai`` (the adapter), ``cache`` (the
response cache), ``usage`` (prices, ledger, budgets, metering), ``testing`` (test doubles),
``config`` (configuration) and ``local`` (a local llama.cpp server for integration tests)."""
