"""Run a rewardlab app on 127.0.0.1 (a free port) in a thread for a test, and stop it after."""

from __future__ import annotations

import contextlib
import threading
import time


@contextlib.contextmanager
def running(app, graceful_s: float = 5.0):
    """Yield ``(base_url, server)``; the server stops (gracefully) when the block ends."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=graceful_s, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not (server.started and server.servers) and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
