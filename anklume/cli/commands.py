"""Command definitions; each body is one call into ``anklume.actions``."""

from __future__ import annotations

from pathlib import Path

import rich_click as click

from anklume.cli import infra_option, main, run
from anklume.errors import EXIT_USAGE


def usage_error(message: str, ctx: click.Context) -> click.UsageError:
    """A usage error raised by a command itself: exit 3, like click's own (see ``anklume.cli``)."""
    error = click.UsageError(message, ctx)
    error.exit_code = EXIT_USAGE
    return error


def recorded_file(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """``FILE`` or ``MEMBER=FILE``: each FILE must exist (an existing file named ``a=b`` is a file)."""
    import os

    for value in values:
        member, sep, rest = value.partition("=")
        path = value if os.path.lexists(value) or not sep else rest
        if not os.path.lexists(path):
            raise click.BadParameter(f"{path or '(empty)'}: no such file ([MEMBER=]FILE)", ctx, param)
        if os.path.isdir(path):
            raise click.BadParameter(f"{path} is a directory ([MEMBER=]FILE)", ctx, param)
    return values


@main.command()
@infra_option
@click.option("--check", is_flag=True, help="Exit 1 if the lock would change (its infra hash is not that of infra.yml); offline, writes nothing.")
@click.option("--update", is_flag=True, help="Re-resolve pins: all of them, or only the NAMES given (image refs, model refs, 'ollama', 'open-webui', machine names or 'gpus').")
@click.option("--offline", is_flag=True, help="Resolve only from the lock and the local cache.")
@click.option("--gpu-inventory", multiple=True, metavar="[MEMBER=]FILE", callback=recorded_file,
              help="Lock for another host: its `anklume gpus --json` or `incus query /1.0/resources` output; in a cluster, MEMBER=FILE for each member (repeat), or `anklume gpus --json` of the cluster.")
@click.option("--nvidia-smi", "nvidia_smi", multiple=True, metavar="[MEMBER=]FILE", callback=recorded_file,
              help="That host's `nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total --format=csv` output; in a cluster, MEMBER=FILE (repeat).")
@click.option("--incus", "endpoint", help="Incus socket path or https URL (default: ANKLUME_INCUS, global.sources.incus, then the local socket); naming one asks whether it is a cluster.")
@click.option("--ours", multiple=True, metavar="NAME",
              help="On a conflicted lock: keep our side's pin NAME (repeat for several).")
@click.option("--theirs", multiple=True, metavar="NAME",
              help="On a conflicted lock: keep their side's pin NAME (repeat for several).")
@click.option("--diff", "diff_against", is_flag=False, flag_value="HEAD", default=None, metavar="[REV|PATH]",
              help="Print the pins changed between that lock (a git revision, default HEAD, or a lock file) and this one; writes nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --diff: the changes as JSON.")
@click.argument("names", nargs=-1)
@click.pass_context
def lock(ctx, infra_file, check, update, offline, gpu_inventory, nvidia_smi, endpoint, ours, theirs, diff_against,
         as_json, names):
    """Resolve infra.yml into anklume.lock (pins images, Ollama, models, GPUs and, in an Incus cluster, each machine's member).

    A lock with git's conflict markers is merged from both sides, offline: each pin from the
    side that has it; the same pin locked differently on both sides is a conflict (`--update
    NAME`, `--ours NAME` or `--theirs NAME`). See docs/git.md.

    Exit codes: 0 done (or `--check`: up to date), 1 error, a conflict (or `--check`: the lock would change).
    """
    if diff_against is not None:
        from anklume.actions.lock import do_lock_diff

        if check or update or ours or theirs or names or offline or gpu_inventory or nvidia_smi or endpoint:
            raise usage_error("--diff only reads: it takes no other option but --json", ctx)
        run(ctx, do_lock_diff, infra_file, against=diff_against, as_json=as_json)
    if as_json:
        raise usage_error("--json goes with --diff", ctx)
    from anklume.actions.lock import do_lock

    run(ctx, do_lock, infra_file, check=check, update=update, names=names, offline=offline,
        gpu_inventory=gpu_inventory, nvidia_smi=nvidia_smi, ours=ours, theirs=theirs, endpoint=endpoint)


@main.command("lock-merge", hidden=True)
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("ours", type=click.Path(path_type=Path))
@click.argument("theirs", type=click.Path(path_type=Path))
@click.argument("path")
@click.pass_context
def lock_merge(ctx, base, ours, theirs, path):
    """git's merge driver for anklume.lock (`anklume lock-merge %O %A %B %P`, set up by `anklume init`)."""
    from anklume.actions.lockgit import do_lock_merge

    run(ctx, do_lock_merge, base, ours, theirs, path)


@main.command("lock-textconv", hidden=True)
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def lock_textconv(ctx, file):
    """git's diff driver for anklume.lock (textconv): one line per pin (set up by `anklume init`)."""
    from anklume.actions.lockgit import do_lock_textconv

    run(ctx, do_lock_textconv, file)


@main.command()
@infra_option
@click.option("--example", metavar="NAME", help="Start from one of the shipped examples (`anklume init --example list` names them).")
@click.pass_context
def init(ctx, infra_file, example):
    """Set up a project: a starter infra.yml (or an example) where there is none, .gitignore entries,
    and in a git work tree the lock's merge and diff drivers (.gitattributes and the repository's
    git config). Never overwrites; running it again changes nothing.
    """
    from anklume.actions.init import do_init

    run(ctx, do_init, infra_file, example=example)


incus_option = click.option("--incus", "endpoint", help="Incus socket path or https URL (default: ANKLUME_INCUS, global.sources.incus, then the local socket).")


@main.command()
@infra_option
@click.option("--plan", "plan_only", is_flag=True, help="Write nothing: print what would be created, updated, replaced or deleted, and why.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable plan and results.")
@click.option("--no-apply", is_flag=True, help="Only write the Ansible tree; do not touch Incus.")
@click.option("--prune", is_flag=True, help="Delete unprotected orphans (files and Incus objects); protected ones are never deleted.")
@click.option("--replace", is_flag=True, help="Rebuild protected (or adopted) instances whose image pin changed: the old root filesystem is kept as an image, volumes and config stay.")
@click.option("--adopt", "adopt", multiple=True, metavar="NAME", help="Take over an existing object anklume did not create (or another infra owns): a unit as the plan names it (network:homelab), a machine or a domain. Repeatable.")
@click.option("--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Units applied in parallel.")
@click.option("--deep", is_flag=True, help="Re-hash every artefact placed in instances (default: presence and sizes), read the bridges and network ACLs themselves, and repair what differs.")
@incus_option
@click.pass_context
def build(ctx, infra_file, plan_only, as_json, no_apply, prune, replace, adopt, jobs, deep, endpoint):
    """Write the Ansible tree from the lock, then apply to Incus only the units whose key changed.

    Refuses a stale lock. Exit codes: 0 done (`--plan`: nothing to do), 2 (`--plan`) changes pending,
    1 error (a failed unit, stale lock, invalid infra, Incus unreachable).
    """
    from anklume.actions.build import do_build

    run(ctx, do_build, infra_file, apply=not no_apply, prune_orphans=prune, plan_only=plan_only,
        as_json=as_json, jobs=jobs, replace=replace, deep=deep, endpoint=endpoint,
        verbose=ctx.obj.verbose, adopt=adopt)


@main.command()
@infra_option
@click.option("--live", is_flag=True, help="Also compare the live Incus objects, artefacts and GPU slots with the lock.")
@click.option("--json", "as_json", is_flag=True, help="Findings as JSON (with --live).")
@click.option("--deep", is_flag=True, help="With --live: re-hash every byte of the artefacts placed in instances (default: presence and sizes).")
@click.option("--probe", is_flag=True, help="With --live: send probes between the infra's own instances and compare the reachability with the policy (exit 1 on a wrong pair).")
@incus_option
@click.pass_context
def verify(ctx, infra_file, live, as_json, deep, endpoint, probe):
    """Prove the lock is fresh and every generated file's managed section is what the lock renders;
    with `--live`, that the live infrastructure is what the lock says. Writes nothing.

    Exit codes: 0 clean, 1 a difference (a unified diff, or findings: object, field, expected, actual).
    """
    from anklume.actions.verify import do_verify

    run(ctx, do_verify, infra_file, live=live, as_json=as_json, deep=deep, endpoint=endpoint, probe=probe)


@main.command()
@infra_option
@click.argument("unit", required=False)
@click.option("--json", "as_json", is_flag=True)
@incus_option
@click.pass_context
def why(ctx, infra_file, unit, as_json, endpoint):
    """Why a unit (`instance:web`, or `web`) would be applied: its inputs, recorded key and what differs."""
    from anklume.actions.explain import do_why

    run(ctx, do_why, infra_file, unit=unit, as_json=as_json, endpoint=endpoint)


@main.command()
@infra_option
@click.option("--dot", is_flag=True, help="Graphviz DOT output.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def graph(ctx, infra_file, dot, as_json):
    """The unit DAG: each unit, its key and what it comes after. Offline."""
    from anklume.actions.explain import do_graph

    run(ctx, do_graph, infra_file, dot=dot, as_json=as_json)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON (usable with `lock --gpu-inventory`).")
@click.option("--incus", "endpoint", help="Incus socket path or URL (default: ANKLUME_INCUS, then the local socket).")
@click.pass_context
def gpus(ctx, as_json, endpoint):
    """List the host's GPUs: Incus resources joined with nvidia-smi (UUID, VRAM); on an Incus cluster, each member's (a `member` column; JSON: member -> inventory)."""
    from anklume.actions.gpus import do_gpus

    run(ctx, do_gpus, as_json=as_json, endpoint=endpoint)
