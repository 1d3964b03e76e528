"""The one base of every user-facing deployer error.

Each library module raises its own subclass with a one-line message that names the problem and
the fix; the CLI turns any of them into `click.ClickException` in one place (cli.DeployerGroup),
so no command needs its own try/except.
"""

from __future__ import annotations


class DeployerError(Exception):
    """A problem the user can fix; the message is one line and says how."""
