"""Undo of the changes made from the pages: a token in the answer's X-CVTools-Undo header, one change
through the journal that puts the images (or the group's name) back; used, expired, unknown or
conflicting tokens are 409 and change nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cvtools.settings import Settings
from cvtools.web import create_app
from cvtools.web.api_dataset import UNDO_HEADER as UNDO

from ..helpers import TestClient, assert_consistent, image_bytes, snapshot


def _setup(client: TestClient) -> list[str]:
    for g in ("g", "h"):
        client.post("/api/groups", json={"name": g})
    files = [("files", (f"{i}.png", image_bytes(i), "image/png")) for i in range(4)]
    return [a["id"] for a in client.post("/api/groups/g/images", files=files).json()["added"]]


def _where(client: TestClient, ids: list[str]) -> list[tuple[str, str]]:
    return [(i["group"], i["status"]) for i in (client.get(f"/api/images/{x}").json() for x in ids)]


def test_status_change_and_move_are_undone(client: TestClient, dataset_dir: Path) -> None:
    ids = _setup(client)
    before = snapshot(dataset_dir)
    answer = client.post("/api/images/status", json={"ids": ids[:3], "status": "deleted"})
    assert answer.json() == {"updated": 3}  # the contract's shape; the token travels in a header
    r = {"undo": answer.headers[UNDO]}
    assert client.post("/api/undo", json={"token": r["undo"]}).json() == {"undone": 3}
    assert _where(client, ids) == [("g", "group")] * 4
    assert snapshot(dataset_dir) == before  # the files are back in the group folder
    again = client.post("/api/undo", json={"token": r["undo"]})
    assert again.status_code == 409 and "already undone" in again.json()["detail"]

    moved = client.post("/api/images/move", json={"ids": ids[:2], "group": "h"})
    assert moved.json() == {"moved": 2}
    assert client.post("/api/undo", json={"token": moved.headers[UNDO]}).json() == {"undone": 2}
    assert _where(client, ids[:2]) == [("g", "group")] * 2
    assert_consistent(dataset_dir)


def test_an_image_changed_since_refuses_the_undo(client: TestClient, dataset_dir: Path) -> None:
    ids = _setup(client)
    r = {"undo": client.post("/api/images/status", json={"ids": ids[:2], "status": "new"}).headers[UNDO]}
    client.post("/api/images/move", json={"ids": [ids[0]], "group": "h"})
    state = _where(client, ids)
    refused = client.post("/api/undo", json={"token": r["undo"]})
    assert refused.status_code == 409 and "changed since" in refused.json()["detail"]
    assert _where(client, ids) == state  # nothing was undone, not even the image that did not change


def test_unknown_and_expired_tokens(client: TestClient, dataset_dir: Path) -> None:
    ids = _setup(client)
    unknown = client.post("/api/undo", json={"token": "nope"})
    assert unknown.status_code == 409 and "not known" in unknown.json()["detail"]
    assert client.post("/api/undo", json={}).status_code == 422
    r = {"undo": client.post("/api/images/status", json={"ids": ids, "status": "deleted"}).headers[UNDO]}
    db = sqlite3.connect(dataset_dir / ".cvtools" / "catalog.sqlite")
    with db:
        db.execute("UPDATE undo SET expires = 0 WHERE token = ?", (r["undo"],))
    db.close()
    expired = client.post("/api/undo", json={"token": r["undo"]})
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]
    assert _where(client, ids) == [("g", "deleted")] * 4
    nothing = client.post("/api/images/status", json={"ids": ids, "status": "deleted"})
    assert nothing.json() == {"updated": 0} and UNDO not in nothing.headers  # no change, nothing to undo


def test_group_rename_is_undone(client: TestClient, dataset_dir: Path) -> None:
    ids = _setup(client)
    answer = client.patch("/api/groups/g", json={"name": "renamed"})
    assert answer.json() == {"name": "renamed"}
    r = {"undo": answer.headers[UNDO]}
    assert client.post("/api/undo", json={"token": r["undo"]}).json() == {"undone": 1, "group": "g"}
    assert _where(client, ids) == [("g", "group")] * 4 and (dataset_dir / "g").is_dir()
    r = {"undo": client.patch("/api/groups/g", json={"name": "other"}).headers[UNDO]}
    client.delete("/api/groups/other")
    gone = client.post("/api/undo", json={"token": r["undo"]})
    assert gone.status_code == 409 and "renamed or deleted since" in gone.json()["detail"]
    assert_consistent(dataset_dir)


def test_group_deletion_is_undone(client: TestClient, dataset_dir: Path) -> None:
    ids = _setup(client)
    client.post("/api/groups", json={"name": "sub", "parent": "g"})
    sub = [("files", ("s.png", image_bytes(9), "image/png"))]
    sub_id = client.post("/api/groups/g/sub/images", files=sub).json()["added"][0]["id"]
    client.post("/api/images/status", json={"ids": [ids[3]], "status": "new"})
    before = snapshot(dataset_dir)
    answer = client.delete("/api/groups/g")
    assert answer.json() == {"deleted": "g", "images": 5}
    assert "g" not in [x["name"] for x in client.get("/api/groups").json()["groups"]]
    back = client.post("/api/undo", json={"token": answer.headers[UNDO]})
    assert back.json() == {"undone": 5, "group": "g"}, back.text
    assert {x["name"] for x in client.get("/api/groups").json()["groups"]} >= {"g", "g/sub", "h"}
    assert _where(client, [*ids, sub_id]) == [("g", "group")] * 3 + [("g", "new"), ("g/sub", "group")]
    assert sorted(p for p in snapshot(dataset_dir) if "trash" not in p[0]) == sorted(
        p for p in before if "trash" not in p[0]
    )
    assert_consistent(dataset_dir)

    again = client.delete("/api/groups/g")
    client.post("/api/groups", json={"name": "G"})  # the name is taken again (in another case)
    refused = client.post("/api/undo", json={"token": again.headers[UNDO]})
    assert refused.status_code == 409 and "exists again" in refused.json()["detail"]


def test_adding_to_another_group_is_undone(settings: Settings, dataset_dir: Path) -> None:
    with TestClient(create_app(settings.model_copy(update={"label_mode": "multi"}))) as client:
        ids = _setup(client)
        answer = client.post("/api/images/add", json={"ids": ids[:2], "group": "h"})
        assert answer.json() == {"added": 2}
        assert client.get("/api/groups/h/images").json()["total"] == 2
        assert client.post("/api/undo", json={"token": answer.headers[UNDO]}).json() == {"undone": 2}
        assert client.get("/api/groups/h/images").json()["total"] == 0
        assert _where(client, ids[:2]) == [("g", "group")] * 2  # the images themselves stay
        assert not list((dataset_dir / "h").iterdir())
        assert_consistent(dataset_dir)
