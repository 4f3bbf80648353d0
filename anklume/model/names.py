"""Names that become Incus objects, file names, interface names or registry
paths.  Each rule is checked before anything uses the name.

Every pattern is anchored with ``\\A`` and ``\\Z``, and checked with ``fullmatch``: ``$``
also matches before a final newline, so ``^...$`` with ``match`` would take ``"lab\\n"``
for a name (and write ``inventory/lab\\n.yml``)."""

from __future__ import annotations

import re

import msgspec

from anklume.errors import ResolveError

#: Domains name an Incus project, a bridge ``net-<domain>`` and files: DNS-safe.
DOMAIN_RE = re.compile(r"\A[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
#: Machines name Incus instances (hostnames) and ``host_vars/<machine>.yml``.
MACHINE_RE = re.compile(r"\A[a-z]([a-z0-9-]{0,61}[a-z0-9])?\Z")
#: Profiles, devices and volumes: no '/', no leading '.', so never '..'.
PROFILE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
DEVICE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
ROLE_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}\Z")
ANSIBLE_VAR_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
#: Incus cluster members (``target``): a host name's characters, as ``incus cluster list`` shows them.
MEMBER_RE = re.compile(r"\A[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?\Z")

IMAGE_REMOTES = ("images", "local")
DEFAULT_REGISTRY = "registry.ollama.ai"
_ALIAS_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_./-]*\Z")


def parse_image_ref(ref: str) -> tuple[str, str, str | None]:
    """``images:debian/13`` -> (remote, alias, error).  No remote means ``local``,
    as the ``incus`` CLI reads it."""
    remote, sep, alias = ref.partition(":")
    if not sep:
        remote, alias = "local", ref
    if remote not in IMAGE_REMOTES:
        return remote, alias, f"unknown remote '{remote}' (known: {', '.join(IMAGE_REMOTES)})"
    if not _ALIAS_RE.fullmatch(alias) or ".." in alias.split("/"):
        return remote, alias, "the alias must be letters, digits and '-_./' without spaces"
    return remote, alias, None


# -- Ollama model names (ollama/ollama types/model/name.go) ---------------------------------------------------------------------------

_HOST_RULE = "1-350 characters: letters, digits, '_', '-', '.', ':', not starting with '-', '.' or ':'"
_NAMESPACE_RULE = "1-80 characters: letters, digits, '_', '-', not starting with '-'"
_MODEL_RULE = "1-80 characters: letters, digits, '_', '-', '.', not starting with '-' or '.'"
_PARTS = {
    "host": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}"), _HOST_RULE),
    "namespace": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}"), _NAMESPACE_RULE),
    "model": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"), _MODEL_RULE),
    "tag": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"), _MODEL_RULE),
}


class ModelName(msgspec.Struct, frozen=True, kw_only=True):
    """A fully qualified Ollama model name (``types/model/name.go``)."""

    host: str = DEFAULT_REGISTRY
    namespace: str = "library"
    model: str
    tag: str = "latest"
    scheme: str = "https"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def manifest_path(self) -> str:
        return f"/v2/{self.namespace}/{self.model}/manifests/{self.tag}"


def parse_model_ref(ref: str) -> ModelName:
    """Parse ``[scheme://][host/][namespace/]model[:tag]`` as Ollama's ``ParseName`` does.

    The tag is whatever follows the last ``:`` when it comes after the last ``/``; then the
    last ``/`` separates the model, the next one the namespace, and the rest is the host.
    """
    rest, parts = ref, {}
    if rest.rfind(":") > rest.rfind("/"):
        rest, parts["tag"] = rest.rsplit(":", 1)
    for kind in ("model", "namespace"):
        rest, sep, parts[kind] = rest.rpartition("/")
        if not sep:
            break
    else:
        scheme, sep, host = rest.partition("://")
        parts["host"], parts["scheme"] = (host, scheme) if sep else (rest, "https")
    for kind, value in parts.items():
        _check_part(ref, kind, value)
    return ModelName(**parts)


def _check_part(ref: str, kind: str, value: str) -> None:
    if kind == "scheme":
        if value not in ("http", "https"):
            raise ResolveError(f"model {ref!r}: scheme {value!r} is not http or https")
        return
    pattern, rule = _PARTS[kind]
    if not pattern.fullmatch(value):
        raise ResolveError(f"model {ref!r}: invalid {kind} {value!r}", f"a {kind} is {rule}")


def check_model_ref(ref: str) -> str | None:
    """The problem with a model reference, or None."""
    try:
        parse_model_ref(ref)
    except ResolveError as exc:
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return None
