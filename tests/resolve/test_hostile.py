"""What a mirror or an inventory file sends, at its most hostile: names with a trailing
newline, JSON nested a thousand deep, numbers no disk or GPU has.  Each is a SourceError
that names the source, never a crash and never a value in the lock."""

from __future__ import annotations

import hashlib
import json

import pytest

from anklume.errors import SourceError
from anklume.model.names import ModelName
from anklume.resolve.gpus import parse_inventory_file
from anklume.resolve.ollama import parse_manifest

from tests.support.recorded import GEMMA

NAME = ModelName(model="gemma", tag="2b")
CARD = {"pci": "0000:00:06.0", "vendor_id": "10de", "product_id": "2335"}


@pytest.mark.parametrize("field", ["pci", "vendor_id", "product_id"])
def test_inventory_ids_with_a_trailing_newline_are_refused(field):
    card = dict(CARD, **{field: CARD[field] + "\n"})
    with pytest.raises(SourceError):
        parse_inventory_file(json.dumps([card]).encode(), source="gpus.json")


def test_manifest_digest_with_a_trailing_newline_is_refused():
    doc = json.loads(GEMMA.read_bytes())
    doc["layers"][0]["digest"] += "\n"
    with pytest.raises(SourceError, match=r"\$\.layers\[0\]\.digest"):
        parse_manifest(json.dumps(doc).encode(), NAME, url="m", digest_headers={})
