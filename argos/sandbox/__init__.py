"""Running untrusted rule code: the sandbox pool (one locked-down child per run) and the long-lived
rule workers of the online detector, over one process layer."""
