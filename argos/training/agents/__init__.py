"""The LLM agent loop: the LangGraph graph, the rule lab, the agents, their prompts and the
durable per-unit run."""
