"""What every search provider shares: candidates, paging cursors, block detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
PHONE_UA = "Nokia6230i/2.0 (03.80) Profile/MIDP-2.0 Configuration/CLDC-1.1"  # Google's basic (WML) page
SEARCH_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Candidate:
    url: str
    page_url: str | None = None
    width: int | None = None
    height: int | None = None
    title: str | None = None


class Blocked(Exception):
    """The search engine refused us (consent page, captcha, rate limit): try the next provider."""


class Provider(Protocol):
    name: str

    def search(self, client: httpx.Client, query: str, cursor: Any) -> tuple[list[Candidate], Any]:
        """One page of results and the cursor of the next page (None when there is none)."""
        ...


def get_page(
    client: httpx.Client,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    min_bytes: int = 200,
) -> httpx.Response:
    """GET a results page; raise Blocked on the signs of a refusal."""
    try:
        resp = client.get(url, params=params, headers=headers, timeout=SEARCH_TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise Blocked(f"{urlsplit(url).netloc}: {type(exc).__name__}") from None
    final = str(resp.url)
    if resp.status_code in (202, 403, 418, 429) or resp.status_code >= 500:
        raise Blocked(f"{urlsplit(url).netloc} answered {resp.status_code}")
    if any(mark in final for mark in ("/sorry", "consent.", "/captcha")):
        raise Blocked(f"{urlsplit(url).netloc} redirected to a consent or captcha page")
    if resp.status_code >= 400:
        raise Blocked(f"{urlsplit(url).netloc} answered {resp.status_code}")
    body = resp.text[:5000].lower()
    if "captcha" in body or "unusual traffic" in body:
        raise Blocked(f"{urlsplit(url).netloc} asks for a captcha")
    if len(resp.content) < min_bytes:
        raise Blocked(f"{urlsplit(url).netloc} returned an almost empty page")
    return resp


def get_json(client: httpx.Client, url: str, name: str, **kw: Any) -> Any:
    """A JSON results page; anything else counts as being blocked."""
    resp = get_page(client, url, min_bytes=2, **kw)
    try:
        return resp.json()
    except ValueError:
        raise Blocked(f"{name} answered something that is not JSON") from None


def to_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None
