"""Rules: the rule contract and static gate, the builtin generator's grammar and its rendering,
and rule-set folders on disk."""
