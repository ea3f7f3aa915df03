"""The `longops` command: run the server and workers, and look after operations.

The commands live beside this: `server.py` (serve, worker, db) and `client.py` (those that
talk to a running server); this module puts them under one `longops` command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from longops._version import __version__
from longops.cli import client, server
from longops.cli.exits import EXIT_CODES

# Plain output, not rich's panels: a usage error is then one `Error:` line, whole, at any
# terminal width (a panel wraps it across several).
app = typer.Typer(
    help="longops: a self-hosted service for long-running operations.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command()(server.serve)
app.command()(server.worker)
app.add_typer(server.db_app, name="db")
app.add_typer(client.ops_app, name="ops")
app.command("kinds")(client.kinds)
app.command("models")(client.models)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"longops {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """longops: a self-hosted service for long-running operations."""
