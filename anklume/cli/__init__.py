"""The ``anklume`` command line: thin handlers; heavy imports happen inside
each command so ``--help`` stays instant.  Exit codes: see ``anklume.errors``."""

from __future__ import annotations

import sys
from pathlib import Path

import rich_click as click

from anklume import __version__

click.rich_click.TEXT_MARKUP = "markdown"
click.rich_click.COMMAND_GROUPS = {
    "anklume": [
        {"name": "Pipeline", "commands": ["lock", "build", "verify"]},
        {"name": "Inspect", "commands": ["why", "graph", "gpus"]},
    ]
}

infra_option = click.option(
    "-f", "--file", "infra_file", type=click.Path(dir_okay=False, path_type=Path),
    default=Path("infra.yml"), show_default=True, help="The infra.yml to use; the lock and the tree live beside it.")


class Context:
    def __init__(self, verbose: bool):
        self.verbose = verbose


def run(ctx: click.Context, action, *args, **kwargs) -> None:
    """The error boundary: an AnklumeError becomes a short message and its exit code."""
    from anklume.errors import AnklumeError

    try:
        code = action(*args, **kwargs)
    except AnklumeError as exc:
        if ctx.obj.verbose:
            raise
        click.echo(exc.render(), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the boundary: a bug is said to be one, in one screen
        if ctx.obj.verbose:
            raise
        from anklume.executor import BUG_HINT

        click.echo(f"error: {type(exc).__name__}: {exc}\n  hint: {BUG_HINT}", err=True)
        sys.exit(1)
    sys.exit(code or 0)


@click.group()
@click.version_option(__version__, prog_name="anklume")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Reproducible home-lab infrastructure on Incus.

    `infra.yml` -> `anklume lock` -> `anklume build` -> `anklume verify`.
    """
    ctx.obj = Context(verbose)


from anklume.cli import commands  # noqa: E402,F401  (registers the commands)
