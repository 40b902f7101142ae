"""``argos demo``: the main job on the embedded default (what ``make demo`` runs)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo() -> None:
        """Run the demo: synthetic data, a built-in rule, a score table."""
        typer.echo("demo: not implemented yet")
