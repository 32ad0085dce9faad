"""A small local web server for URL tests: images, non-images, slow and huge bodies, redirects."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .helpers import image_bytes

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


class FakeSearch:
    """Serves Google WML, Bing async and DuckDuckGo formats over a list of image URLs, paged."""

    def __init__(self, web: FakeWeb) -> None:
        self.web = web
        self.urls: list[str] = []
        self.page = 5
        web.routes["/wml/search"] = self.google
        web.routes["/bing/async"] = self.bing
        web.routes["/ddg/"] = self.ddg_page
        web.routes["/ddg/i.js"] = self.ddg_json

    def _send(self, h: BaseHTTPRequestHandler, body: str, ctype: str = "text/html") -> None:
        data = body.encode()
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _slice(self, start: int) -> list[str]:
        if start >= len(self.urls):  # engines repeat their last page
            start = max(0, len(self.urls) - self.page)
        return self.urls[start : start + self.page]

    def google(self, h: BaseHTTPRequestHandler) -> None:
        q = parse_qs(urlsplit(h.path).query)
        links = "".join(
            f'<a href="/imgres?imgurl={escape(u)}&amp;imgrefurl=http://pages/{i}&amp;w=48&amp;h=40">x</a>'
            for i, u in enumerate(self._slice(int(q["start"][0])))
        )
        self._send(h, f"<html><body>{'<p>filler</p>' * 20}{links}</body></html>")

    def bing(self, h: BaseHTTPRequestHandler) -> None:
        q = parse_qs(urlsplit(h.path).query)
        items = "".join(
            f'<a class="iusc" m="{escape(json.dumps({"murl": u, "purl": "http://p", "t": "t"}))}" href="#">i</a>'
            for u in self._slice(int(q["first"][0]))
        )
        self._send(h, f"<div>{items}</div>")

    def ddg_page(self, h: BaseHTTPRequestHandler) -> None:
        self._send(h, "<html><script>vqd='4-12345';</script>" + "x" * 300 + "</html>")

    def ddg_json(self, h: BaseHTTPRequestHandler) -> None:
        q = parse_qs(urlsplit(h.path).query)
        assert q["vqd"] == ["4-12345"]
        start = int(q.get("s", ["0"])[0])
        results = [{"image": u, "url": "http://p", "title": "t", "width": 48, "height": 40} for u in self._slice(start)]
        nxt = f"i.js?q=x&s={start + self.page}&o=json" if start + self.page < len(self.urls) else None
        self._send(h, json.dumps({"results": results, "next": nxt}), "application/json")


def serve_images(web: FakeWeb, engine: FakeSearch, seeds: range, prefix: str = "/img") -> None:
    for s in seeds:
        web.body(f"{prefix}/{s}.png", image_bytes(s))
        engine.urls.append(f"{web.url}{prefix}/{s}.png")
