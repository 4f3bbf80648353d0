"""Command definitions; each body is one call into ``anklume.actions``."""

from __future__ import annotations

from pathlib import Path

import rich_click as click

from anklume.cli import infra_option, main, run


@main.command()
@infra_option
@click.option("--check", is_flag=True, help="Exit 1 if the lock would change; writes nothing, needs no network when infra.yml is unchanged.")
@click.option("--update", is_flag=True, help="Re-resolve pins: all of them, or only the NAMES given (image refs, model refs, 'ollama', machine names or 'gpus').")
@click.option("--offline", is_flag=True, help="Resolve only from the lock and the local cache.")
@click.option("--gpu-inventory", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Lock for another host: its `anklume gpus --json` or `incus query /1.0/resources` output.")
@click.option("--nvidia-smi", "nvidia_smi", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="That host's `nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total --format=csv` output.")
@click.argument("names", nargs=-1)
@click.pass_context
def lock(ctx, infra_file, check, update, offline, gpu_inventory, nvidia_smi, names):
    """Resolve infra.yml into anklume.lock (pins images, Ollama, models, GPUs).

    Exit codes: 0 done (or `--check`: up to date), 1 error (or `--check`: the lock would change).
    """
    from anklume.actions.lock import do_lock

    run(ctx, do_lock, infra_file, check=check, update=update, names=names, offline=offline,
        gpu_inventory=gpu_inventory, nvidia_smi=nvidia_smi)


@main.command()
@infra_option
@click.option("--no-apply", is_flag=True, help="Only write the Ansible tree; do not touch Incus.")
@click.option("--prune", is_flag=True, help="Delete unprotected orphans (protected ones are never deleted).")
@click.pass_context
def build(ctx, infra_file, no_apply, prune):
    """Write the Ansible tree from the lock (and apply it).

    Exit codes: 0 done, 1 error (stale lock, invalid infra).
    """
    from anklume.actions.build import do_build

    run(ctx, do_build, infra_file, apply=not no_apply, prune_orphans=prune)


@main.command()
@infra_option
@click.pass_context
def verify(ctx, infra_file):
    """Prove the lock is fresh and every generated file's managed section is what the lock renders.

    Offline. Exit codes: 0 clean, 1 a difference (a unified diff is printed).
    """
    from anklume.actions.verify import do_verify

    run(ctx, do_verify, infra_file)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON (usable with `lock --gpu-inventory`).")
@click.option("--incus", "endpoint", help="Incus socket path or URL (default: ANKLUME_INCUS, then the local socket).")
@click.pass_context
def gpus(ctx, as_json, endpoint):
    """List the host's GPUs: Incus resources joined with nvidia-smi (UUID, VRAM)."""
    from anklume.actions.gpus import do_gpus

    run(ctx, do_gpus, as_json=as_json, endpoint=endpoint)
