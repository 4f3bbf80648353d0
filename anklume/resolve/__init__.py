"""Resolvers: the thin I/O shell that turns what infra.yml names into pins.

Each source has a pure parser (bytes in, pin out, no I/O) and a small wrapper that
fetches the bytes through :class:`anklume.resolve.http.Fetcher`:

- ``simplestreams``: Incus image aliases -> fingerprints and file hashes (and
  ``local:<alias>`` through an Incus reader);
- ``ollama``: Ollama releases -> asset URL + sha256, model refs -> manifest digests;
- ``pypi``: the Open WebUI version -> its wheel's file name, URL, sha256 and size;
- ``gpus``: Incus resources + nvidia-smi -> GPU cards; ``inventory`` asks the host;
- ``http`` (urllib, the cache) and ``fetched`` (what a fetch returns, pure data).

This package imports nothing itself, so importing a pure parser never pulls in urllib,
subprocess or pylxd (tests/test_purity.py checks it).  Which URL each source is fetched from is
:mod:`anklume.sources`.
"""
