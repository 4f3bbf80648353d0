"""Units: the infrastructure as a DAG of content-addressed pieces (pure).

- :mod:`anklume.units.unit`: the ``Unit`` noun;
- :mod:`anklume.units.key`: how a unit's key is computed (and what it covers);
- :mod:`anklume.units.graph`: Infra + Lock -> the units of the Incus layer;
- :mod:`anklume.units.plan`: units + the live state -> a ``Plan`` of changes with reasons.
"""
