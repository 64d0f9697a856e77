"""One way to run the real app for tests: uvicorn in a thread, on a socket bound to a free
127.0.0.1 port, with the lifespan run on start and on stop. Every wait is bounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import openai
import uvicorn


@contextmanager
def serve_app(app, *, start_timeout_s: float = 15.0, stop_timeout_s: float = 15.0) -> Iterator[str]:
    """Yield the base URL of ``app`` served on a free loopback port; stop it (running the
    lifespan's shutdown) on exit, also when it failed to start."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is TCP (proto 0 -> +40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=stop_timeout_s)  # let a half-started lifespan shut down before the next test
            sock.close()
            raise RuntimeError("gateway did not start" + ("" if not thread.is_alive() else " (and did not stop)"))
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=stop_timeout_s)
        sock.close()
        assert not thread.is_alive(), "gateway did not stop in time"


@dataclass
class GatewayClient:
    """A running gateway as tests see it: its URL, app, settings, a token, and SDK clients."""

    url: str
    app: object
    settings: object
    token: str
    sdk_timeout_s: ClassVar[float] = 10.0

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def client(self, **kw) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", self.sdk_timeout_s)
        return openai.OpenAI(base_url=self.v1, api_key=kw.pop("api_key", self.token), **kw)

    def aclient(self, **kw) -> openai.AsyncOpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", self.sdk_timeout_s)
        return openai.AsyncOpenAI(base_url=self.v1, api_key=kw.pop("api_key", self.token), **kw)
