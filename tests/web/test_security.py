"""Security review as tests: the token on every route, cookie sessions against cross-site requests,
user text escaped in pages, no tracebacks or private paths in error messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvtools.settings import Settings
from cvtools.web import create_app

from ..conftest import wait_jobs
from ..helpers import TestClient, image_bytes

TOKEN = "s3cret-token-value"
PAGES = ["/", "/learning", "/analysis", "/anomalies"]
MUTATING = ("post", "put", "patch", "delete")


@pytest.fixture
def secured(dataset_dir: Path) -> Iterator[TestClient]:
    s = Settings(dataset_dir=dataset_dir, auth_token=TOKEN, preload_model=False)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        wait_jobs_auth(c)
        yield c


def wait_jobs_auth(c: TestClient) -> None:
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    wait_jobs(c)
    del c.headers["Authorization"]


def operations(c: TestClient) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the OpenAPI document, parameters filled with 'x'."""
    doc = c.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return [
        (method, re.sub(r"{[^}]+}", "x", path))
        for path, ops in doc["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_token_on_every_route(secured: TestClient) -> None:
    ops = operations(secured)
    assert len(ops) >= 35
    for method, path in [*ops, ("get", "/openapi.json"), ("get", "/docs")]:
        r = secured.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json() == {"detail": "authentication required: send 'Authorization: Bearer <token>' or log in"}
        wrong = secured.request(method, path, headers={"Authorization": "Bearer s3cret-token-valuE"})
        assert wrong.status_code == 401, (method, path)
    # the image bytes, thumbnails, events and /cv by name, and the pages (a browser is sent to log in)
    for path in ["/api/images/x/file", "/api/images/x/thumb", "/api/events", "/cv?/etc/passwd"]:
        assert secured.get(path).status_code == 401, path
    for page in PAGES:
        r = secured.get(page, headers={"accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), page
        assert secured.get(page).status_code == 401  # a script without a browser's Accept gets JSON
    # with the token everything answers (not 401)
    for method, path in ops:
        if path == "/api/events":
            continue
        r = secured.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code != 401, (method, path)
    # only the login page and the static files are open
    assert secured.get("/login").status_code == 200 and secured.get("/static/css/app.css").status_code == 200


def test_cookie_session_refuses_cross_site_requests(secured: TestClient) -> None:
    r = secured.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
    assert secured.get("/api/groups").status_code == 200  # the cookie alone reads
    same = {"origin": "http://localhost"}
    assert secured.post("/api/groups", json={"name": "ok"}, headers=same).status_code == 201
    for method, path in operations(secured):
        if method not in MUTATING:
            continue
        for headers in (
            {"origin": "http://evil.example"},
            {"origin": "null"},
            {"sec-fetch-site": "cross-site"},
            {"origin": "http://localhost.evil.example"},
        ):
            r = secured.request(method, path, headers=headers, json={})
            assert r.status_code == 403, (method, path, headers, r.status_code)
    assert [g["name"] for g in secured.get("/api/groups").json()["groups"]] == ["ok"]


def test_user_text_is_escaped_and_pages_run_only_own_scripts(client: TestClient) -> None:
    hostile = '<script>alert("x")<img src=x onerror=alert(2)>'  # a slash is refused in names
    assert client.post("/api/groups", json={"name": hostile}).status_code == 201
    files = [("files", ("<img src=x onerror=alert(1)>.png", image_bytes(1), "image/png"))]
    assert client.post(f"/api/groups/{hostile}/images", files=files).status_code == 200
    for page in PAGES:
        r = client.get(page)
        assert r.status_code == 200 and "<script>alert" not in r.text and "onerror=alert" not in r.text
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    # API answers are JSON, never HTML, whatever they contain
    r = client.get("/api/groups")
    assert r.headers["content-type"].startswith("application/json") and r.json()["groups"][0]["name"] == hostile


def test_errors_leak_no_traceback_or_private_path(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "private" / "plans.png"
    secret.parent.mkdir()
    secret.write_bytes(image_bytes(2))
    r = client.get("/cv?" + str(secret))
    assert r.status_code in (403, 503) and "Traceback" not in r.text
    # an unexpected failure inside a route: a generic message, the details only in the server log
    from cvtools.dataset import Dataset

    def boom(self: Dataset) -> None:
        raise RuntimeError(f"cannot open {secret}")

    monkeypatch.setattr(Dataset, "list_groups", boom)
    with TestClient(client.app, raise_server_exceptions=False) as c2:
        r = c2.get("/api/groups")
    assert r.status_code == 500 and str(secret) not in r.text and "Traceback" not in r.text
    assert r.json() == {"detail": "internal error; the server log has the details"}
