"""``anklume why`` and ``anklume graph``: thin handlers over the unit planner."""

from __future__ import annotations

from pathlib import Path

from anklume.actions.build import incus_endpoint
from anklume.project import Project


def do_why(infra_file: Path, *, unit: str | None, as_json: bool, endpoint: str | None) -> int:
    from anklume.actions.apply import do_why as why

    project = Project(infra_file)
    infra = project.load_infra()
    lock = project.fresh_lock(infra)
    return why(project, infra, lock, unit=unit, as_json=as_json, endpoint=incus_endpoint(infra, endpoint))


def do_graph(infra_file: Path, *, dot: bool, as_json: bool) -> int:
    from anklume.actions.apply import do_graph as graph

    project = Project(infra_file)
    infra = project.load_infra()
    lock = project.fresh_lock(infra)
    return graph(project, infra, lock, dot=dot, as_json=as_json)
