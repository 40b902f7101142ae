"""``argos serve`` refuses a port in use before it starts anything."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from argos.cli import app
from argos.cli.serve import check_port_free

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules" / "basic"
runner = CliRunner()


def test_a_port_in_use_is_one_error_before_startup() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        args = ["serve", "--rules", str(RULES), "--port", str(port), "--trusted-in-process"]
        result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"argos serve: port {port} on 127.0.0.1 is already in use (another argos serve?): "
        "stop it or choose another with --port"
    )


def test_a_free_port_and_port_zero_pass_the_check() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", 0)
