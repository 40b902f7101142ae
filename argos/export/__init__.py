"""Exporting trained rule sets to other alerting stacks (today: Prometheus rule files).

Layer L5: it reads rule sets (:mod:`argos.rules`), runs the online detector to compute expected
alerts (:mod:`argos.online`) and only the command line imports it.
"""
