"""Infra + Lock -> the whole unit graph: the Incus layer (:mod:`anklume.units.graph`) and, given
the on-disk inputs of the roles, the units inside instances (:mod:`anklume.units.inside`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anklume.lock.schema import Lock
from anklume.model.schema import Infra
from anklume.units.graph import Graph, build_graph, incus_units
from anklume.units.inside import inside_units


def build_units(infra: Infra, lock: Lock, inputs: Mapping[str, Any] | None = None) -> Graph:
    """The units for ``infra`` as pinned by ``lock``: the Incus layer, and with ``inputs`` (the
    on-disk inputs of :func:`anklume.units.inside.inside_units`: ``role_digests``,
    ``vars_digests``, ``wheelhouses``) the units inside instances too."""
    units = incus_units(infra, lock)
    if inputs is not None:
        images = {u.name: u.identity["fingerprint"] for u in units if u.kind == "instance"}
        units.extend(inside_units(infra, lock, instance_images=images, **inputs))
    return build_graph(units)
