"""Training: the driver shared by every generator, parameter fitting, the builtin search generator
and the LLM agent loop."""
