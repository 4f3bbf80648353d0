"""Names that become Incus objects, file names, interface names or registry
paths.  Each rule is checked before anything uses the name."""

from __future__ import annotations

import re
from typing import NamedTuple

#: Domains name an Incus project, a bridge ``net-<domain>`` and files: DNS-safe.
DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
#: Machines name Incus instances (hostnames) and ``host_vars/<machine>.yml``.
MACHINE_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
#: Profiles, devices and volumes: no '/', no leading '.', so never '..'.
PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ROLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
ANSIBLE_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

IMAGE_REMOTES = ("images", "local")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")


def parse_image_ref(ref: str) -> tuple[str, str, str | None]:
    """``images:debian/13`` -> (remote, alias, error).  No remote means ``local``,
    as the ``incus`` CLI reads it."""
    remote, sep, alias = ref.partition(":")
    if not sep:
        remote, alias = "local", ref
    if remote not in IMAGE_REMOTES:
        return remote, alias, f"unknown remote '{remote}' (known: {', '.join(IMAGE_REMOTES)})"
    if not _ALIAS_RE.match(alias) or ".." in alias.split("/"):
        return remote, alias, "the alias must be letters, digits and '-_./' without spaces"
    return remote, alias, None


# -- Ollama model names (ollama/ollama types/model/name.go) -----------------------

DEFAULT_REGISTRY = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
_NS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$")
_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class ModelName(NamedTuple):
    host: str
    namespace: str
    model: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"


def parse_model_ref(ref: str) -> ModelName:
    """``llama3.2:3b`` -> registry.ollama.ai/library/llama3.2:3b; ValueError if invalid."""
    rest, tag = ref, DEFAULT_TAG
    colon, slash = ref.rfind(":"), ref.rfind("/")
    if colon > slash:
        rest, tag = ref[:colon], ref[colon + 1:]
    parts = rest.split("/")
    if len(parts) > 3 or not all(parts):
        raise ValueError("expected [host/][namespace/]model[:tag]")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = parts[-3] if len(parts) == 3 else DEFAULT_REGISTRY
    if not _HOST_RE.match(host) or len(host) > 350:
        raise ValueError(f"invalid registry host '{host}'")
    if not _NS_RE.match(namespace):
        raise ValueError(f"invalid namespace '{namespace}' (letters, digits, '_' and '-', at most 80)")
    if not _PART_RE.match(model):
        raise ValueError(f"invalid model name '{model}' (letters, digits, '_', '.' and '-', at most 80)")
    if not _PART_RE.match(tag):
        raise ValueError(f"invalid tag '{tag}' (letters, digits, '_', '.' and '-', at most 80)")
    return ModelName(host, namespace, model, tag)


def check_model_ref(ref: str) -> str | None:
    try:
        parse_model_ref(ref)
    except ValueError as exc:
        return str(exc)
    return None
