"""``anklume init``: a project's files, never overwriting one.

- no ``infra.yml``: a commented starter (one domain, one machine), or ``--example NAME``'s
  files (the examples ship inside the package: ``anklume/examples``; in a source checkout,
  ``examples/`` beside the package);
- ``.gitignore``: the entries for what must not be committed, added when missing;
- in a git work tree: ``.gitattributes`` gets ``anklume.lock merge=anklume diff=anklume``
  (when missing) and the repository's own config (``git config --local``) the two drivers:
  ``merge.anklume.driver`` runs ``anklume lock-merge %O %A %B %P``, ``diff.anklume.textconv``
  ``anklume lock-textconv``, each through this Python (``python -m anklume``), so they work
  whether or not ``anklume`` is on the PATH of the shell that runs git.

Running it again changes nothing: each step says whether it wrote or kept.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from rich.console import Console

from anklume.actions.git import Git, GitError
from anklume.errors import AnklumeError
from anklume.fsio import atomic_write, read_input
from anklume.project import LOCK_NAME

ATTRIBUTES_LINE = f"{LOCK_NAME} merge=anklume diff=anklume"
IGNORED = ("# anklume: temp files of writes a crash interrupted (removed by the next build)",
           ".*.anklume-tmp", "# Ansible's retry files", "*.retry")

STARTER = """\
# infra.yml: what anklume builds on Incus.
#
#   anklume lock     pins what can drift (images, Ollama, models, GPUs) into anklume.lock
#   anklume build    writes the Ansible tree (inventory/, group_vars/, host_vars/) and
#                    applies it to Incus: only what changed
#   anklume verify   checks the tree (and, with --live, Incus) against the lock
#
# Commit infra.yml, anklume.lock and the tree.  Reference: docs/infra.md; working with
# git (merges, reviews, CI): docs/git.md; more complete files: `anklume init --example list`.

# The name of this infrastructure: it owns what anklume builds from this file.
project_name: my-lab

global:
  # Each domain gets the network <base_subnet>.<subnet_id>.0/24.
  base_subnet: "10.100"
  # The image of the machines that name none: <remote>:<alias>, where the remote is
  # `images` (images.linuxcontainers.org) or `local` (the Incus daemon's own images).
  default_os_image: "images:debian/13"

domains:
  # A domain: one network and one Incus project, with its machines.
  lab:
    description: "My first domain"
    subnet_id: 10
    machines:
      # A machine: a container (type: lxc, the default) or a virtual machine (type: vm).
      lab-box:
        description: "A first container"
        ip: "10.100.10.10"
        # roles: [base_system]     # Ansible roles applied inside (anklume/provision/roles)
        # models: [llama3.2:3b]    # Ollama models, pinned in the lock and placed inside
        # gpu: true                # a GPU of the host, pinned in the lock
"""


def examples_dir() -> Path | None:
    """Where the examples are: in the package (installed), else beside it (a source checkout)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "examples", package.parent / "examples"):
        if candidate.is_dir() and any(candidate.glob("*/infra.yml")):
            return candidate
    return None


def example_names() -> list[str]:
    folder = examples_dir()
    return sorted(p.parent.name for p in folder.glob("*/infra.yml")) if folder else []


def do_init(infra_file: Path, *, example: str | None) -> int:
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    if example == "list":
        for name in example_names():
            out.print(name)
        return 0
    root = infra_file.parent
    source = _example(example) if example else None
    done: list[str] = []
    existing = read_input(infra_file)
    if existing is None:
        _write_new(infra_file, (source / "infra.yml").read_bytes() if source else STARTER.encode())
        done.append(f"wrote {infra_file.name}" + (f" (the example {example})" if source else " (a starter: edit it)"))
        if source is not None:
            for extra in sorted(source.iterdir()):
                target = root / extra.name
                if extra.is_file() and extra.name != "infra.yml" and not target.exists():
                    _write_new(target, extra.read_bytes())
                    done.append(f"wrote {extra.name} (the example's)")
    elif source is not None and existing != (source / "infra.yml").read_bytes():
        raise AnklumeError(f"{infra_file} exists: --example never overwrites it; nothing was written",
                           "run `anklume init --example NAME` in an empty folder (or with -f NEW/infra.yml)")
    else:
        done.append(f"kept {infra_file.name} (it exists)")
    done.append(_add_lines(root / ".gitignore", IGNORED))
    git = Git(root)
    if git.toplevel() is None:
        done.append("not in a git work tree: no merge or diff driver (run `git init`, then `anklume init` again)")
    else:
        done.append(_add_lines(root / ".gitattributes", (ATTRIBUTES_LINE,)))
        done.extend(_register_drivers(git))
    for line in done:
        out.print(line)
    if existing is None:
        out.print(f"next: edit {infra_file.name}, then `anklume lock` and `anklume build`")
    return 0


def _example(name: str) -> Path:
    folder = examples_dir()
    names = example_names()
    if folder is None or name not in names:
        raise AnklumeError(f"--example: no example named {name!r}",
                           f"the examples: {', '.join(names)}" if names else "this installation has no examples")
    return folder / name


def _write_new(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise AnklumeError(f"cannot write {path}: {exc.strerror or exc}") from None


def _add_lines(path: Path, lines: tuple[str, ...]) -> str:
    """Append the ``lines`` that ``path`` lacks (a line counts as there when its words are)."""
    data = read_input(path) or b""
    text = data.decode("utf-8", "surrogateescape")
    have = {" ".join(line.split()) for line in text.splitlines()}
    missing = [line for line in lines if " ".join(line.split()) not in have]
    if not missing or all(line.startswith("#") for line in missing):
        return f"kept {path.name} (its entries are there)"
    sep = "" if not text or text.endswith("\n") else "\n"
    _write_new(path, (text + sep + "".join(f"{line}\n" for line in missing)).encode("utf-8", "surrogateescape"))
    return f"{'wrote' if not data else 'added to'} {path.name}: " + ", ".join(l for l in missing if not l.startswith("#"))


def driver_config() -> dict[str, str]:
    """The git config that registers the drivers, run through this Python."""
    anklume = f"{shlex.quote(sys.executable)} -m anklume"
    return {
        "merge.anklume.name": "anklume.lock, merged pin by pin (anklume lock-merge)",
        "merge.anklume.driver": f"{anklume} lock-merge %O %A %B %P",
        "merge.anklume.recursive": "text",
        "diff.anklume.textconv": f"{anklume} lock-textconv",
    }


def _register_drivers(git: Git) -> list[str]:
    changed = []
    try:
        for key, value in driver_config().items():
            if git.config_get(key) != value:
                git.config_set(key, value)
                changed.append(key)
    except GitError as exc:
        raise AnklumeError(f"cannot register the drivers in the repository's git config: {exc}") from None
    if changed:
        return [f"registered the lock's merge and diff drivers in the repository's git config ({', '.join(changed)})"]
    return ["kept the lock's merge and diff drivers (already registered in the repository's git config)"]
