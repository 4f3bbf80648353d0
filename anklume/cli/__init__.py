"""The ``anklume`` command line: thin handlers; heavy imports happen inside
each command so ``--help`` stays instant.  Exit codes: see ``anklume.errors``."""

from __future__ import annotations

import sys
from pathlib import Path

import rich_click as click

from anklume import __version__
from anklume.errors import EXIT_INTERRUPTED, EXIT_USAGE, AnklumeError

click.rich_click.TEXT_MARKUP = "markdown"
click.rich_click.COMMAND_GROUPS = {
    "anklume": [
        {"name": "Pipeline", "commands": ["init", "lock", "build", "verify"]},
        {"name": "Inspect", "commands": ["why", "graph", "gpus"]},
    ]
}

infra_option = click.option(
    "-f", "--file", "infra_file", type=click.Path(dir_okay=False, path_type=Path),
    default=Path("infra.yml"), show_default=True, help="The infra.yml to use; the lock and the tree live beside it.")


def _usage_exit_code(method):
    """Wrap a click method so that the usage errors it raises exit with ``EXIT_USAGE`` (3):
    click's own 2 would read as ``build --plan``'s "changes pending"."""
    def wrapped(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except click.UsageError as exc:  # includes bad parameter values and no command given
            exc.exit_code = EXIT_USAGE
            raise
    return wrapped


class Command(click.RichCommand):
    make_context = _usage_exit_code(click.RichCommand.make_context)


class Group(click.RichGroup):
    command_class = Command
    make_context = _usage_exit_code(click.RichGroup.make_context)
    resolve_command = _usage_exit_code(click.RichGroup.resolve_command)


class Context:
    def __init__(self, verbose: bool):
        self.verbose = verbose


def run(ctx: click.Context, action, *args, **kwargs) -> None:
    """The error boundary: an AnklumeError becomes a short message and its exit code."""
    try:
        code = action(*args, **kwargs)
    except AnklumeError as exc:
        if ctx.obj.verbose:
            raise
        click.echo(exc.render(), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the boundary: a bug is said to be one, in one screen
        if ctx.obj.verbose:
            raise
        from anklume.executor import BUG_HINT

        click.echo(f"error: {type(exc).__name__}: {exc}\n  hint: {BUG_HINT}", err=True)
        sys.exit(1)
    sys.exit(code or 0)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="anklume")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Reproducible home-lab infrastructure on Incus.

    `infra.yml` -> `anklume lock` -> `anklume build` -> `anklume verify`.
    """
    ctx.obj = Context(verbose)


from anklume.cli import commands  # noqa: E402,F401  (registers the commands)
