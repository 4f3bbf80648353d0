"""Where each source is fetched from, and the canonical names the lock records.

A mirror changes where bytes come from, never what the lock says: resolvers fetch from
the effective URL and record the canonical one (``CANONICAL_*``).

Precedence, highest first: the environment (``ANKLUME_IMAGES_URL``,
``ANKLUME_OLLAMA_REGISTRY``, ``ANKLUME_OLLAMA_RELEASES``, ``ANKLUME_INCUS``,
``ANKLUME_PYPI``), then
infra.yml's ``global.sources``, then the defaults.  An empty value counts as unset.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

import msgspec

from anklume.errors import SourceError
from anklume.model.names import DEFAULT_REGISTRY

CANONICAL_IMAGES = "https://images.linuxcontainers.org"
CANONICAL_OLLAMA_REGISTRY = "https://registry.ollama.ai"
CANONICAL_OLLAMA_RELEASES = "https://github.com/ollama/ollama/releases/download"
CANONICAL_PYPI = "https://pypi.org"
#: Where PyPI's files live: ``<this>/<blake2b_256 as aa/bb/rest>/<filename>``.
CANONICAL_PYPI_FILES = "https://files.pythonhosted.org/packages"
OLLAMA_REGISTRY_HOST = DEFAULT_REGISTRY

#: Local Incus sockets, tried in this order when ``incus`` is not set.
INCUS_SOCKETS = ("/var/lib/incus/unix.socket", "/run/incus/unix.socket")

#: Source field -> environment variable that overrides it.
ENV_VARS = {
    "images": "ANKLUME_IMAGES_URL",
    "ollama_registry": "ANKLUME_OLLAMA_REGISTRY",
    "ollama_releases": "ANKLUME_OLLAMA_RELEASES",
    "incus": "ANKLUME_INCUS",
    "pypi": "ANKLUME_PYPI",
}

#: scheme://host[:port][/path]: a host name, an IPv4 address or a bracketed IPv6 address.
_HTTP_URL = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?)"
                       r"(:(?P<port>[0-9]{1,5}))?(?P<path>/[^\s?#]*)?")


class Sources(msgspec.Struct, frozen=True, kw_only=True):
    """The effective URL of each source (``incus=None``: the local socket)."""

    images: str = CANONICAL_IMAGES
    ollama_registry: str = CANONICAL_OLLAMA_REGISTRY
    ollama_releases: str = CANONICAL_OLLAMA_RELEASES
    incus: str | None = None
    pypi: str = CANONICAL_PYPI


def source_hint(field: str) -> str:
    """How a user points ``field`` elsewhere, for error hints."""
    return f"check {ENV_VARS[field]} / global.sources.{field}"


def effective_sources(configured: Mapping[str, str | None], env: Mapping[str, str]) -> Sources:
    """Merge defaults, infra.yml's ``global.sources`` (``configured``) and the environment."""
    unknown = sorted(set(configured) - set(ENV_VARS))
    if unknown:
        raise SourceError(
            f"global.sources: unknown source {', '.join(unknown)}",
            f"known sources: {', '.join(ENV_VARS)}",
        )
    chosen: dict[str, str] = {}
    for field, var in ENV_VARS.items():
        if env.get(var):
            chosen[field] = validated_source(field, env[var], f"environment variable {var}")
        elif configured.get(field):
            chosen[field] = validated_source(field, configured[field], f"global.sources.{field}")
    return Sources(**chosen)


def validated_source(field: str, value: str, origin: str) -> str:
    """``value`` without trailing slashes, or an error naming where it came from."""
    value = value.strip().rstrip("/")
    if field == "incus":
        ok = (value.startswith("/") and len(value) > 1) or (value.startswith("https://") and is_http_url(value))
        expected = "an absolute unix socket path or an https:// URL"
    else:
        ok = is_http_url(value)
        expected = "an http(s) URL without query or fragment"
    if not ok:
        raise SourceError(f"{origin}: {value!r} is not {expected}", source_hint(field))
    return value


def incus_endpoint(sources: Mapping[str, object], flag: str | None, env: Mapping[str, str]) -> str | None:
    """``--incus``, else ``ANKLUME_INCUS``, else ``global.sources.incus``, else the local socket
    (None).  ``sources``: infra.yml's ``global.sources`` as a mapping."""
    if flag:
        return flag
    return effective_sources(sources, env).incus


def is_http_url(url: str) -> bool:
    """``http(s)://host[:port][/path]``, with a host urllib can parse (``http://[::1`` made it
    raise ValueError deep inside a fetch), a port of at most 65535, no query or fragment."""
    match = _HTTP_URL.fullmatch(url)
    if match is None:
        return False
    if match["port"] is not None and not 0 < int(match["port"]) <= 65535:
        return False
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    return True
