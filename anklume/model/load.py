"""``load_infra``: bytes of ``infra.yml`` -> a validated ``Infra``, or an
``InvalidInfra`` listing every problem (file, key path, line, expected, hint)."""

from __future__ import annotations

from typing import Any

from anklume.errors import InvalidInfra
from anklume.model.convert import Context, convert_struct, describe
from anklume.model.schema import (Domain, Global, Infra, Machine, NetworkPolicy, OllamaSettings,
                                  OpenWebUISettings, ProfileShape, SourcesSettings, StorageVolumeShape)
from anklume.model.validate import validate_infra
from anklume.model.yamlsafe import Path_, load_yaml


def load_infra(data: bytes, file: str = "infra.yml") -> Infra:
    raw, marks = load_yaml(data, file)
    ctx = Context(file, marks)
    infra = convert_infra(raw, ctx)
    if infra is not None:
        validate_infra(infra, ctx)
    if ctx.problems:
        raise InvalidInfra(problems=ctx.problems)
    assert infra is not None
    return infra


def convert_infra(raw: dict[str, Any], ctx: Context) -> Infra | None:
    return convert_struct(raw, Infra, (), ctx, nested={
        "global": _global,
        "domains": lambda v, p, c: _mapping_of(v, p, c, _domain),
        "network_policies": _policies,
    })


def _policies(value: Any, path: Path_, ctx: Context) -> list[NetworkPolicy] | None:
    """A list of policies; ``null`` is none.  Each item is checked on its own (its key path)."""
    if value is None:
        return []
    if not isinstance(value, list):
        ctx.add(path, f"expected a list of policies, got {describe(value)}",
                "e.g. '- {from: perso, to: pro-web, ports: [8080], protocol: tcp}'")
        return None
    out = [convert_struct(item, NetworkPolicy, path + (i,), ctx, nested={"ports": _ports})
           for i, item in enumerate(value)]
    return [p for p in out if p is not None]


def _ports(value: Any, path: Path_, ctx: Context) -> list[int] | str | None:
    if value == "all":
        return value
    if not isinstance(value, list) or not value:
        ctx.add(path, f"ports must be a non-empty list or 'all', got {describe(value)}", "e.g. [80, 443] or all")
        return None
    ok = True
    for i, port in enumerate(value):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            ctx.add(path + (i,), f"invalid port {port!r} (must be 1-65535)")
            ok = False
    if ok and len(set(value)) != len(value):
        ctx.add(path, "a port is listed twice")
        ok = False
    return list(value) if ok else None


def _global(value: Any, path: Path_, ctx: Context) -> Global | None:
    return convert_struct(value, Global, path, ctx, nested={
        "ollama": lambda v, p, c: convert_struct(v, OllamaSettings, p, c),
        "open_webui": lambda v, p, c: convert_struct(v, OpenWebUISettings, p, c),
        "sources": lambda v, p, c: convert_struct(v, SourcesSettings, p, c),
    })


def _domain(value: Any, path: Path_, ctx: Context) -> Domain | None:
    return convert_struct(value, Domain, path, ctx, nested={
        "machines": lambda v, p, c: _mapping_of(v, p, c, _machine),
        "profiles": lambda v, p, c: _mapping_of(v, p, c, _shape(ProfileShape)),
    })


def _machine(value: Any, path: Path_, ctx: Context) -> Machine | None:
    return convert_struct(value, Machine, path, ctx, nested={
        "storage_volumes": lambda v, p, c: (
            None if v is None else _mapping_of(v, p, c, _shape(StorageVolumeShape))),
    })


def _shape(cls):
    """Check a pass-through mapping against ``cls`` but keep the user's dict."""
    def check(value: Any, path: Path_, ctx: Context) -> dict[str, Any] | None:
        return value if convert_struct(value, cls, path, ctx) is not None else None
    return check


def _mapping_of(value: Any, path: Path_, ctx: Context, item) -> dict[str, Any] | None:
    """A mapping name -> item; ``null`` is an empty mapping (as the original allowed)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        ctx.add(path, f"expected a mapping of names, got {describe(value)}")
        return None
    out: dict[str, Any] = {}
    for name, sub in value.items():
        converted = item(sub, path + (name,), ctx)
        if converted is not None:
            out[name] = converted
    return out
