"""What the forms of the lock's values cannot say alone: values that must agree with each other.

- each pin sits under the key its ``original`` gives (an image under ``remote:alias``, a
  model under its ``ref``, a GPU under its machine);
- a model pin is what its own manifest says: the digest is the sha256 of the manifest's
  bytes, and the name, config, layers, size and VRAM are what parsing those bytes gives,
  exactly as when the model was resolved (a lock edited to say otherwise would place
  files the registry never served);
- a release or wheel URL ends in the file name the pin records.

Pure: no I/O.  ``lock_problems`` yields ``"<key path>: <problem>"``, first problem first.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from anklume.errors import AnklumeError
from anklume.lock.schema import Lock, ModelPin
from anklume.model.names import check_model_ref, parse_image_ref, parse_model_ref
from anklume.resolve.ollama import parse_manifest
from anklume.resolve.pypi import is_pure_wheel

#: ``ImageOriginal.type`` -> the suffix of its key (a container's key has none).
_TYPE_SUFFIX = {"container": "", "virtual-machine": " (virtual-machine)"}


def lock_problems(lock: Lock) -> Iterator[str]:
    for key, pin in lock.images.items():
        o = pin.original
        wanted = f"{o.remote}:{o.alias}{_TYPE_SUFFIX[o.type]}"
        if key != wanted:
            yield f"images.{key}: the key does not name its original ({wanted!r})"
        error = parse_image_ref(f"{o.remote}:{o.alias}")[2]
        if error:
            yield f"images.{key}.original.alias: {error}"
    if lock.ollama is not None:
        locked = lock.ollama.locked
        if not locked.url.endswith("/" + locked.asset):
            yield f"ollama.locked.url: {locked.url!r} does not end in /{locked.asset}"
    if lock.open_webui is not None:
        locked = lock.open_webui.locked
        if not is_pure_wheel(locked.filename):
            yield f"open_webui.locked.filename: {locked.filename!r} is not a py3-none-any wheel"
        if not locked.url.endswith("/" + locked.filename):
            yield f"open_webui.locked.url: {locked.url!r} does not end in /{locked.filename}"
    for key, pin in lock.models.items():
        yield from _model_problems(key, pin)
    for key, pin in lock.gpus.items():
        if key != pin.original.machine:
            yield f"gpus.{key}.original.machine: the pin of {key!r} says it is the GPU of {pin.original.machine!r}"


def _model_problems(key: str, pin: ModelPin) -> Iterator[str]:
    where = f"models.{key}"
    if key != pin.original.ref:
        yield f"{where}.original.ref: the pin of {key!r} says it is the pin of {pin.original.ref!r}"
        return
    error = check_model_ref(key)
    if error:
        yield f"{where}: invalid model reference: {error}"
        return
    locked = pin.locked
    try:
        body = locked.manifest.encode("utf-8")
        again = parse_manifest(body, parse_model_ref(key), url="(in the lock)", digest_headers={})
    except UnicodeEncodeError:
        yield f"{where}.locked.manifest: not UTF-8 text"
        return
    except AnklumeError as exc:
        yield f"{where}.locked.manifest: {exc.message.replace('manifest (in the lock) ', '')}"
        return
    if locked.digest != again.digest:
        yield f"{where}.locked.digest: {locked.digest} is not the sha256 of the manifest ({again.digest})"
    elif locked.name != again.name:
        yield f"{where}.locked.name: {locked.name!r} is not the full name of {key!r} ({again.name!r})"
    elif locked.config != again.config:
        yield f"{where}.locked.config: the manifest says {_show(again.config)}"
    elif locked.layers != again.layers:
        diff = next((i for i, (a, b) in enumerate(zip(locked.layers, again.layers)) if a != b), None)
        if diff is None:
            yield f"{where}.locked.layers: the manifest has {len(again.layers)} layers, the pin {len(locked.layers)}"
        else:
            yield f"{where}.locked.layers[{diff}]: the manifest says {_show(again.layers[diff])}"
    elif locked.size != again.size:
        yield f"{where}.locked.size: the manifest says {again.size}"
    elif locked.vram_bytes != again.vram_bytes:
        yield f"{where}.locked.vram_bytes: the manifest says {again.vram_bytes}"


def _show(blob: msgspec.Struct) -> str:
    return msgspec.json.encode(blob, order="sorted").decode()
