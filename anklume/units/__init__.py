"""Units: the infrastructure as a DAG of content-addressed pieces (pure).

- :mod:`anklume.units.unit`: the nouns ``Unit`` and ``LiveObject``;
- :mod:`anklume.units.key`: how a unit's key is computed (and what it covers);
- :mod:`anklume.units.graph`: the ``Graph`` and Infra + Lock -> the units of the Incus layer;
- :mod:`anklume.units.inside`: Infra + Lock -> the units inside instances (artefacts, roles);
- :mod:`anklume.units.build`: both, as one keyed graph;
- :mod:`anklume.units.plan`: units + the live state -> a ``Plan`` of changes with reasons;
- :mod:`anklume.units.findings`: units + the live state -> what ``verify --live`` reports.
"""
