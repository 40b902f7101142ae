"""Self-contained HTML reports of training runs and evaluations, and their figures."""
