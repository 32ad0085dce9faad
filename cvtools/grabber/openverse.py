"""Openverse (openly licensed images, no key): JSON results paged by `page`."""

from __future__ import annotations

from typing import Any

import httpx

from .base import Candidate, get_json, to_int

PAGE = 20


class Openverse:
    name = "openverse"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def search(self, client: httpx.Client, query: str, cursor: Any) -> tuple[list[Candidate], Any]:
        page = int(cursor or 1)
        data = get_json(client, self.base_url, self.name, params={"q": query, "page": page, "page_size": PAGE})
        out = [
            Candidate(
                url=r["url"],
                page_url=r.get("foreign_landing_url"),
                title=r.get("title"),
                width=to_int(r.get("width")),
                height=to_int(r.get("height")),
            )
            for r in data.get("results", [])
            if r.get("url")
        ]
        more = page < int(data.get("page_count") or 0)
        return out, (page + 1 if out and more else None)
