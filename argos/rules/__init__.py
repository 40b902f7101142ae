"""Rules: the rule contract and static gate, the builtin rule templates, and rule-set folders on
disk."""
