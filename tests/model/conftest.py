"""Shared data for the model tests.

- `BASE`: a small valid infra.yml whose line numbers the rule cases rely on.
- `edit(old, new)`: BASE with one exact, unique piece of text replaced.
- `EXAMPLES`: every example file: the original's six (tests/fixtures/v1-examples, see its
  PROVENANCE.txt, or /work/shared/reference/v1-examples where the copy is absent) and the
  project's own examples/*/infra.yml; ids like `v1/developer` and `examples/developer`.
- `problems(data)`: the problems `load_infra` reports (an empty list when it loads).
"""

from __future__ import annotations

from pathlib import Path

from anklume.errors import InvalidInfra, Problem
from anklume.model.load import load_infra

ROOT = Path(__file__).resolve().parents[2]
_V1 = ROOT / "tests" / "fixtures" / "v1-examples"
V1_DIR = _V1 if _V1.is_dir() else Path("/work/shared/reference/v1-examples")

V1_EXAMPLES = {f"v1/{p.name.removesuffix('.infra.yml')}": p for p in sorted(V1_DIR.glob("*.infra.yml"))}
OWN_EXAMPLES = {f"examples/{p.parent.name}": p for p in sorted(ROOT.glob("examples/*/infra.yml"))}
EXAMPLES = {**V1_EXAMPLES, **OWN_EXAMPLES}

#: Line numbers matter: the cases in test_rules.py name them.
BASE = """\
project_name: demo
global:
  base_subnet: "10.100"
  default_os_image: "images:debian/13"
domains:
  admin:
    description: Admin
    subnet_id: 0
    profiles:
      nesting:
        config:
          security.nesting: "true"
    machines:
      adm-ctrl:
        ip: "10.100.0.10"
        profiles: [default, nesting]
        roles: [base_system]
  work:
    subnet_id: 1
    machines:
      dev-ws:
        ip: "10.100.1.10"
"""


def edit(old: str, new: str, base: str = BASE) -> str:
    assert base.count(old) == 1, f"{old!r} must occur exactly once"
    return base.replace(old, new)


def problems(data: bytes | str, file: str = "infra.yml") -> list[Problem]:
    if isinstance(data, str):
        data = data.encode()
    try:
        load_infra(data, file)
    except InvalidInfra as exc:
        return exc.problems
    return []
