"""Bing's async image results: the JSON in each `a.iusc` element's `m` attribute; `first` is an image offset."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import httpx

from .base import BROWSER_UA, Candidate, get_page, to_int

PAGE = 35


class _Iusc(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        a = dict(attrs)
        if "iusc" in (a.get("class") or "").split() and a.get("m"):
            try:
                self.items.append(json.loads(a["m"] or ""))
            except ValueError:
                pass


class Bing:
    name = "bing"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def search(self, client: httpx.Client, query: str, cursor: Any) -> tuple[list[Candidate], Any]:
        first = int(cursor or 0)
        resp = get_page(
            client,
            self.base_url,
            params={"q": query, "first": first, "count": PAGE},
            headers={"User-Agent": BROWSER_UA},
            min_bytes=50,
        )
        parser = _Iusc()
        parser.feed(resp.text)
        out = [
            Candidate(
                url=m["murl"],
                page_url=m.get("purl"),
                title=m.get("t"),
                width=to_int(m.get("mw") or m.get("w")),
                height=to_int(m.get("mh") or m.get("h")),
            )
            for m in parser.items
            if m.get("murl")
        ]
        return out, (first + len(out) if out else None)
