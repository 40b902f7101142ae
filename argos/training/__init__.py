"""Training: the driver shared by every generator and its seams (``generator``), parameter fitting,
the builtin search generator and the LLM agent loop."""
