"""The one exception tree of mnp.

The library raises these; the CLI is the single boundary that turns them into a one-line message and an exit
status: :class:`UsageError` (and subclasses, such as spec errors) exit 2, everything else exits 1.
"""

from __future__ import annotations

__all__ = ["MnpError", "UsageError", "SpecError", "HostError", "ClusterError", "LaunchError"]


class MnpError(Exception):
    """Base of every error mnp reports to a user."""

    exit_code = 1


class UsageError(MnpError):
    """Bad input from the user: a flag, an argument, a file. Exit status 2."""

    exit_code = 2


class SpecError(UsageError):
    """A job file that does not validate. Carries the dotted path of the field at fault."""

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}" if field else f"{where}{problem}")


class HostError(MnpError):
    """A failure tied to one host or node, named in the message."""

    def __init__(self, host: str, problem: str) -> None:
        self.host = host
        self.problem = problem
        super().__init__(f"{host}: {problem}")


class ClusterError(MnpError):
    """Nodes could not be created, reached or torn down."""


class LaunchError(MnpError):
    """Ranks could not be started."""
