"""A real uvicorn server over the web application, on an ephemeral loopback port, in a thread
(tests that speak HTTP over a socket: raw request lines, keep-alive, a refresh while serving)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from indexer.web.app import create_app


@contextmanager
def running(data_dir: Path, host: str = "127.0.0.1", **options: Any) -> Iterator[tuple[str, Any]]:
    """(base URL, the FastAPI application) of a server serving `data_dir` until the block ends."""
    api = create_app(data_dir, host=host, **options)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(api.state.asgi, http="h11", log_level="warning", lifespan="off", server_header=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="indexer-serve", daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    try:
        assert server.started, "the server did not start"
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{port}", api
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        api.state.service.pool.close()
