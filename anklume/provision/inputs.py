"""The on-disk inputs of the units inside instances: the roles' files and the host variables
of the generated tree, digested, and the wheels of a machine's wheelhouse
(:func:`provision_inputs` -> the keyword inputs of :func:`anklume.units.inside.inside_units`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import blake3
import msgspec
import yaml

from anklume import jsonsafe
from anklume.errors import AnklumeError
from anklume.lock.schema import Lock
from anklume.fsio import atomic_write, default_cache_dir
from anklume.model.needs import OPEN_WEBUI_ROLE, iter_machines
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.render.write import TreeChanges
from anklume.store import hash_file
from anklume.units.build import build_units
from anklume.units.graph import Graph
from anklume.units.key import canonical

SHIPPED_ROLES = Path(__file__).resolve().parent / "roles"


def roles_path(project: Project) -> list[Path]:
    """Where roles are found, highest precedence first: ``roles/`` beside infra.yml, then anklume's."""
    return [project.root / "roles", SHIPPED_ROLES]


def find_role(project: Project, role: str) -> Path:
    for base in roles_path(project):
        if (base / role).is_dir():
            return base / role
    shipped = sorted(p.name for p in SHIPPED_ROLES.iterdir() if p.is_dir()) if SHIPPED_ROLES.is_dir() else []
    raise AnklumeError(f"role {role} not found: neither {project.root / 'roles' / role} nor a role anklume ships",
                       f"anklume ships {', '.join(shipped)}; put your own roles in {project.root / 'roles'}/")


def dir_digest(root: Path) -> str:
    """blake3 over every file below ``root``: relative path, mode bit x, bytes (sorted)."""
    h = blake3.blake3(b"anklume-role-files-v1\0")
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + (b"x" if os.access(path, os.X_OK) else b"-") + b"\0")
        data = path.read_bytes()
        h.update(len(data).to_bytes(8, "little") + data)
    return "blake3:" + h.hexdigest()


def host_var_files(dname: str, mname: str) -> list[str]:
    return ["group_vars/all.yml", f"group_vars/{dname}.yml", f"inventory/{dname}.yml", f"host_vars/{mname}.yml"]


#: Host variables the controller acts on itself (each model unit has its own key): they do not
#: re-run the roles.
CONTROLLER_VARS = ("ollama_models",)


def wheelhouse_dir(project: Project, machine) -> Path | None:  # noqa: ANN001 - a model Machine
    """The controller directory of a machine's wheelhouse (``vars.open_webui_wheelhouse_src``,
    relative to infra.yml's directory), or None."""
    value = (machine.vars or {}).get("open_webui_wheelhouse_src")
    return (project.root / str(value)).resolve() if value else None


def wheelhouse_files(folder: Path, memo_dir: Path | None = None) -> list[list[Any]]:
    """[filename, sha256, size] of each ``*.whl`` in ``folder`` (sorted); sha256 memoised by
    (path, size, mtime) so an unchanged wheelhouse is not re-hashed on every build."""
    if not folder.is_dir():
        raise AnklumeError(f"wheelhouse {folder} is not a directory",
                           "set vars.open_webui_wheelhouse_src to a directory of wheels (`pip download -d DIR ...`)")
    memo_path = (memo_dir or default_cache_dir(os.environ)) / "wheelhouse-sha256.json"
    try:
        memo = jsonsafe.decode(memo_path.read_bytes(), type=dict[str, str])
    except (OSError, msgspec.DecodeError):
        memo = {}
    out, changed = [], False
    for path in sorted(folder.glob("*.whl")):
        if not path.is_file():
            continue
        st = path.stat()
        mark = f"{path}\0{st.st_size}\0{st.st_mtime_ns}"
        digest = memo.get(mark)
        if digest is None:
            digest = hash_file(path)[0].hexdigest()
            memo[mark], changed = digest, True
        out.append([path.name, digest, st.st_size])
    if not out:
        raise AnklumeError(f"wheelhouse {folder} holds no wheel (*.whl)",
                           "fill it with `pip download -d DIR open-webui==<version>`, or remove "
                           "vars.open_webui_wheelhouse_src")
    if changed:
        try:
            atomic_write(memo_path, json.dumps(memo, sort_keys=True).encode())
        except OSError:
            pass
    return out


def provision_inputs(project: Project, infra: Infra, tree: TreeChanges | None = None) -> dict[str, Any]:
    """The keyword inputs of :func:`anklume.units.inside.inside_units` that live on disk:
    the digests of the roles machines list, and of the variables each provisioned host gets from
    the tree's files (as ``tree`` is about to write them, else as they are on disk; user sections
    included, comments and layout not) less :data:`CONTROLLER_VARS`."""
    planned = {c.path: c.new for c in tree.changed} if tree is not None else {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    parsed: dict[str, Any] = {}

    def values(rel: str) -> Any:
        if rel not in parsed:
            if rel in planned:
                text = planned[rel]
            else:
                try:
                    text = (project.root / rel).read_text(encoding="utf-8")
                except FileNotFoundError:
                    text = ""
            try:
                parsed[rel] = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
            except yaml.YAMLError as err:
                raise AnklumeError(f"{project.root / rel}: not valid YAML: {err}",
                                   "fix the part below the managed section (your own variables)") from None
        return parsed[rel]

    role_digests: dict[str, str] = {}
    vars_digests: dict[str, str] = {}
    wheelhouses: dict[str, list[list[Any]]] = {}
    for dname, _domain, mname, machine in iter_machines(infra):
        if not machine.roles:
            continue
        folder = wheelhouse_dir(project, machine)
        if folder is not None and OPEN_WEBUI_ROLE in machine.roles:
            wheelhouses[mname] = wheelhouse_files(folder)
        for role in machine.roles:
            if role not in role_digests:
                role_digests[role] = dir_digest(find_role(project, role))
        files = {rel: values(rel) for rel in host_var_files(dname, mname)}
        host = files[f"host_vars/{mname}.yml"]
        if isinstance(host, dict):
            files[f"host_vars/{mname}.yml"] = {k: v for k, v in host.items() if k not in CONTROLLER_VARS}
        vars_digests[mname] = "blake3:" + blake3.blake3(b"anklume-host-vars-v1\0" + canonical(files)).hexdigest()
    return {"role_digests": role_digests, "vars_digests": vars_digests, "wheelhouses": wheelhouses}


def project_units(project: Project, infra: Infra, lock: Lock, tree: TreeChanges | None = None) -> Graph:
    """Every unit of the project: the Incus layer and the units inside instances, with the roles'
    and host variables' digests read from disk (``tree``: the tree changes about to be written)."""
    return build_units(infra, lock, provision_inputs(project, infra, tree))
