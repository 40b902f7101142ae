"""The embedded LLM-free generator: a search over the rule templates' grammar."""
