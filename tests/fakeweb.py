"""A small local web server for URL tests: images, non-images, slow and huge bodies, redirects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


class FakeWeb:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                web.hits[path] = web.hits.get(path, 0) + 1
                route = web.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeWeb:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- route builders --------------------------------------------------------------------
    def body(
        self, path: str, data: bytes, content_type: str = "image/png", status: int = 200, length: bool = True
    ) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            if length:
                h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        self.routes[path] = route

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()

        self.routes[path] = route

    def drip(self, path: str, data: bytes, delay: float) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.end_headers()
            for i in range(0, len(data), 64):
                h.wfile.write(data[i : i + 64])
                h.wfile.flush()
                time.sleep(delay)

        self.routes[path] = route

    def endless(self, path: str, chunk: bytes = b"\x89PNG\r\n\x1a\n" + b"\0" * 65528) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.end_headers()
            for _ in range(1000):  # 64 MB, far over any cap in the tests
                h.wfile.write(chunk)

        self.routes[path] = route

    def delayed(self, path: str, data: bytes, delay: float) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            time.sleep(delay)
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        self.routes[path] = route
