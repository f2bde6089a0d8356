"""The ``mnp`` command (Click): the one place that prints and the one error boundary."""

from mnp.cli.main import cli, main

__all__ = ["cli", "main"]
