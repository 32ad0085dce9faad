"""DuckDuckGo images: the `vqd` token from the search page, then `i.js` JSON paged by `next`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

from .base import BROWSER_UA, Blocked, Candidate, get_json, get_page, to_int

VQD = re.compile(r"""vqd\s*[=:]\s*["']?([\d-]+)""")


class DuckDuckGo:
    name = "duckduckgo"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/") + "/"

    def search(self, client: httpx.Client, query: str, cursor: Any) -> tuple[list[Candidate], Any]:
        headers = {"User-Agent": BROWSER_UA, "Referer": self.base_url}
        if cursor is None:
            page = get_page(client, self.base_url, params={"q": query, "iar": "images"}, headers=headers, min_bytes=50)
            m = VQD.search(page.text)
            if not m:
                raise Blocked("duckduckgo gave no search token")
            vqd = m[1]
            url, params = (
                urljoin(self.base_url, "i.js"),
                {"l": "us-en", "o": "json", "q": query, "vqd": vqd, "f": ",,,", "p": "1"},
            )
        else:
            vqd, nxt_path = cursor
            url = urljoin(self.base_url, nxt_path)
            if "vqd=" not in nxt_path:  # httpx would replace the query with params: append instead
                url += ("&" if "?" in url else "?") + urlencode({"vqd": vqd})
            params = None
        data = get_json(client, url, self.name, params=params, headers=headers)
        out = [
            Candidate(
                url=r["image"],
                page_url=r.get("url"),
                title=r.get("title"),
                width=to_int(r.get("width")),
                height=to_int(r.get("height")),
            )
            for r in data.get("results", [])
            if r.get("image")
        ]
        nxt = data.get("next")
        return out, ((vqd, nxt) if out and nxt else None)
