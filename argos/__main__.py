"""``python -m argos``: the same as the ``argos`` command."""

from argos.cli import main

main()
