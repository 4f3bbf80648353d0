"""Test support: real daemons started privately for the integration tests.

- `incusd.PrivateIncus`: an `incusd` in its own network namespace and state directory.
- `registry.LocalRegistry`: a Distribution (docker-registry) server on 127.0.0.1.
- `httpserve.StaticHTTPServer`: a tiny threaded HTTP server on 127.0.0.1.
- `events.EventCounter`: counts the lifecycle events (one per write) of a PrivateIncus.

Nothing here binds outside 127.0.0.1 or the private namespace, and teardown only ever signals
processes these helpers started (by PID).
"""
