"""What the forms of the lock's values cannot say alone: values that must agree with each other.

- each pin sits under the key its ``original`` gives (an image under ``remote:alias``, a
  model under its ``ref``, a GPU under its machine);
- a model pin is what its own manifest says: the digest is the sha256 of the manifest's
  bytes, and the name, config, layers, size and VRAM are what parsing those bytes gives,
  exactly as when the model was resolved (a lock edited to say otherwise would place
  files the registry never served);
- a release or wheel URL ends in the file name the pin records;
- a GPU pin's driver files are the driver's (:mod:`anklume.resolve.driver`): each is mounted in
  the container's library directory or ``/usr/bin`` under a driver library's or program's name,
  from a host file of the same library (or program), each target once; ``files`` mode has files,
  ``runtime`` mode none (a lock edited to mount ``/etc/shadow`` into a container is refused);
- in a cluster, each machine is placed on a member the lock lists, on the one infra.yml names
  when it names one, and a GPU pin's member is its machine's.

Pure: no I/O.  ``lock_problems`` yields ``"<key path>: <problem>"``, first problem first.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from anklume.errors import AnklumeError
from anklume.lock.schema import GpuDriver, Lock, ModelPin
from anklume.model.names import check_model_ref, parse_image_ref, parse_model_ref
from anklume.resolve.driver import allowed_dirs, driver_name_of
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
    cluster = lock.cluster
    for machine, placed in (cluster.placement if cluster else {}).items():
        if placed.locked.member not in cluster.members:
            yield f"cluster.placement.{machine}.locked.member: {placed.locked.member!r} is not a member of cluster.members"
        elif placed.original.target is not None and placed.original.target != placed.locked.member:
            yield (f"cluster.placement.{machine}: infra.yml asks for member {placed.original.target!r} but the lock "
                   f"places it on {placed.locked.member!r}")
    for key, pin in lock.gpus.items():
        if pin.member is not None:
            placed = cluster.placement.get(key) if cluster else None
            if placed is None or placed.locked.member != pin.member:
                yield (f"gpus.{key}.member: the GPU is on member {pin.member!r} but the machine is placed on "
                       f"{placed.locked.member if placed else 'no member'!r}")
        if key != pin.original.machine:
            yield f"gpus.{key}.original.machine: the pin of {key!r} says it is the GPU of {pin.original.machine!r}"
        if pin.driver is not None:
            yield from _driver_problems(f"gpus.{key}.driver", pin.driver)


def _driver_problems(where: str, driver: GpuDriver) -> Iterator[str]:
    if driver.mode == "files" and not driver.files:
        yield f"{where}.files: mode 'files' mounts no file"
    if driver.mode == "runtime" and driver.files:
        yield f"{where}.files: mode 'runtime' mounts no file of its own (nvidia-container-cli does)"
    seen: set[str] = set()
    dirs = allowed_dirs()
    for i, f in enumerate(driver.files):
        name = driver_name_of(f.target)
        if f.target.rsplit("/", 1)[0] not in dirs or name is None:
            yield (f"{where}.files[{i}].target: {f.target!r} is not a driver library or program in "
                   f"{', '.join(sorted(dirs))}")
        elif driver_name_of(f.source) != name:
            yield f"{where}.files[{i}].source: {f.source!r} is not a file of {name}"
        elif f.target in seen:
            yield f"{where}.files[{i}].target: {f.target!r} is mounted twice"
        seen.add(f.target)


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
