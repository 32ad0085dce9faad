"""Google Images' basic (WML) results page: /imgres?imgurl=…&imgrefurl=…&w=…&h=… links, paged by `start`."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from .base import PHONE_UA, Candidate, get_page, to_int

HREF = re.compile(r"""href\s*=\s*["']([^"']*imgres\?[^"']*)["']""", re.IGNORECASE)


class Google:
    name = "google"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def search(self, client: httpx.Client, query: str, cursor: Any) -> tuple[list[Candidate], Any]:
        start = int(cursor or 0)
        resp = get_page(
            client, self.base_url, params={"q": query, "tbm": "isch", "start": start}, headers={"User-Agent": PHONE_UA}
        )
        out = []
        for href in HREF.findall(resp.text):
            qs = parse_qs(urlsplit(html.unescape(href)).query)
            if "imgurl" not in qs:
                continue
            out.append(
                Candidate(
                    url=qs["imgurl"][0],
                    page_url=qs.get("imgrefurl", [None])[0],
                    width=to_int(qs.get("w", [None])[0]),
                    height=to_int(qs.get("h", [None])[0]),
                )
            )
        return out, (start + max(len(out), 1) if out else None)
