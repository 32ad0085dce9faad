"""Official keyed APIs, used when their keys are configured: Google Custom Search and Brave Image Search."""

from __future__ import annotations

from typing import Any

import httpx

from .base import Candidate, get_json, to_int


class GoogleCSE:
    """Custom Search JSON API with searchType=image: 10 results per call, at most 100 per query."""

    name = "google_cse"

    def __init__(self, base_url: str, key: str, cx: str) -> None:
        self.base_url, self.key, self.cx = base_url, key, cx

    def search(self, client: httpx.Client, query: str, cursor: Any) -> tuple[list[Candidate], Any]:
        start = int(cursor or 1)
        params = {"key": self.key, "cx": self.cx, "q": query, "searchType": "image", "num": 10, "start": start}
        items = get_json(client, self.base_url, self.name, params=params).get("items", [])
        out = [
            Candidate(
                url=i["link"],
                page_url=(i.get("image") or {}).get("contextLink"),
                title=i.get("title"),
                width=to_int((i.get("image") or {}).get("width")),
                height=to_int((i.get("image") or {}).get("height")),
            )
            for i in items
            if i.get("link")
        ]
        nxt = start + 10
        return out, (nxt if out and nxt <= 91 else None)


class Brave:
    name = "brave"

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url, self.key = base_url, key

    def search(self, client: httpx.Client, query: str, cursor: Any) -> tuple[list[Candidate], Any]:
        if cursor is not None:
            return [], None  # one call returns up to 100 results: there is no next page
        headers = {"X-Subscription-Token": self.key, "Accept": "application/json"}
        results = get_json(client, self.base_url, self.name, params={"q": query, "count": 100}, headers=headers).get(
            "results", []
        )
        out = [
            Candidate(
                url=(r.get("properties") or {}).get("url") or "",
                page_url=r.get("url"),
                title=r.get("title"),
                width=to_int((r.get("properties") or {}).get("width")),
                height=to_int((r.get("properties") or {}).get("height")),
            )
            for r in results
        ]
        return [c for c in out if c.url], "done"
