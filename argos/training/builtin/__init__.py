"""The embedded LLM-free generator: a search over the rule templates' grammar (``search``), and that
search as a training generator and as the ``argos-builtin`` evaluation method (``method``)."""
