"""Test support: real daemons started privately for the integration tests.

- `incusd.PrivateIncus`: an `incusd` in its own network namespace and state directory.
- `registry.LocalRegistry`: a Distribution (docker-registry) server on 127.0.0.1.
- `httpserve.StaticHTTPServer`: a tiny threaded HTTP server on 127.0.0.1.
- `events.EventCounter`: counts the lifecycle events (one per write) of a PrivateIncus.

Test doubles and test data (no daemon):
- `ollama_double.build_ollama_release`: the Ollama release double (`bin/ollama` is a python3
  script answering `--version` and `list`) with its `sha256sum.txt`.
- `models.make_model` / `push_model` / `lay_out_model`: small models in Ollama's formats.
- `webui_double.build_webui_wheel` / `pypi_json`: a stand-in `open-webui` wheel and its PyPI JSON.

Nothing here binds outside 127.0.0.1 or the private namespace, and teardown only ever signals
processes these helpers started (by PID).
"""
