"""``python -m argos.cli``: the same as the ``argos`` command."""

from argos.cli import main

main()
