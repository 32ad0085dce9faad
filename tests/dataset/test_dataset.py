"""Catalog and dataset operations, called directly (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvtools import dataset as dataset_mod
from cvtools.dataset import Dataset, Incoming
from cvtools.dataset.journal import Change, Journal
from cvtools.errors import BadInput, Conflict, NotFound

from ..helpers import assert_consistent, image_bytes, write_tmp


@pytest.fixture
def ds(tmp_path: Path) -> Dataset:
    d = Dataset(tmp_path / "data", max_image_pixels=1_000_000)
    yield d
    d.close()


def add(ds: Dataset, group: str, seeds: list[int], status: str = "group") -> list[dict]:
    items = [Incoming(name=f"img{s}.png", path=write_tmp(ds, image_bytes(s))) for s in seeds]
    return ds.add_images(group, items, status=status).added


def test_groups_tree_operations(ds: Dataset) -> None:
    assert ds.create_group("mammals") == "mammals"
    assert ds.create_group("cats", "mammals") == "mammals/cats"
    assert (ds.root / "mammals" / "cats").is_dir()
    with pytest.raises(Conflict):
        ds.create_group("cats", "mammals")
    with pytest.raises(NotFound):
        ds.create_group("x", "nope")
    add(ds, "mammals/cats", [1, 2])
    assert ds.rename_group("mammals", "animals") == "animals"
    assert (ds.root / "animals" / "cats" / "img1.png").is_file()
    assert [g["name"] for g in ds.list_groups()] == ["animals", "animals/cats"]
    assert ds.list_groups()[1]["counts"] == {"group": 2, "new": 0, "deleted": 0}
    assert ds.delete_group("animals") == 2
    assert ds.group_names() == []
    assert ds.totals() == {"group": 0, "new": 0, "deleted": 2}
    trash = list((ds.root / ".cvtools" / "trash").iterdir())
    assert len(trash) == 1
    assert_consistent(ds.root)


@pytest.mark.parametrize(
    "name", ["", " ", "a/b", "a\\b", "..", ".", ".hidden", "tab\there", "nul\x00", "bell\x07", "x" * 200]
)
def test_bad_group_names(ds: Dataset, name: str) -> None:
    with pytest.raises(BadInput):
        ds.create_group(name)
    assert ds.group_names() == []


def test_upload_skips_bad_and_duplicate(ds: Dataset, tmp_path: Path) -> None:
    ds.create_group("g")
    good = image_bytes(1)
    items = [
        Incoming("a.png", write_tmp(ds, good)),
        Incoming("same.png", write_tmp(ds, good)),
        Incoming("text.jpg", write_tmp(ds, b"hello, not an image at all")),
        Incoming("trunc.png", write_tmp(ds, good[: len(good) // 2])),
        Incoming("huge.png", write_tmp(ds, image_bytes(2, size=(1200, 1000)))),
        Incoming("b.jpg", write_tmp(ds, image_bytes(3, fmt="JPEG"))),
    ]
    r = ds.add_images("g", items)
    assert [a.filename for a in r.added] == ["a.png", "b.jpg"]
    reasons = {s["name"]: s["reason"] for s in r.skipped}
    assert "duplicate" in reasons["same.png"]
    assert "not an image" in reasons["text.jpg"]
    assert "corrupt or truncated" in reasons["trunc.png"]
    assert "too large" in reasons["huge.png"]
    assert list(ds.tmp_dir.iterdir()) == []
    # Bytes already in the catalog are refused in any status, also after deletion.
    ds.set_status([r.added[0].id], "deleted")
    r2 = ds.add_images("g", [Incoming("again.png", write_tmp(ds, good))])
    assert not r2.added and "duplicate" in r2.skipped[0]["reason"]
    assert_consistent(ds.root)


def test_status_changes_move_files(ds: Dataset) -> None:
    ds.create_group("g")
    ds.create_group("h")
    imgs = add(ds, "g", [1, 2, 3])
    ids = [i.id for i in imgs]
    assert ds.set_status(ids[:2], "new") == 2
    assert sorted(p.name for p in (ds.root / "g").iterdir()) == ["img3.png"]
    assert str(ds.get_image(ids[0]).path).endswith(f".cvtools/files/{ids[0]}.png")
    assert ds.set_status(ids[:2], "new") == 0
    assert ds.move(ids[:2], "h") == 2
    assert sorted(p.name for p in (ds.root / "h").iterdir()) == ["img1.png", "img2.png"]
    with pytest.raises(NotFound):
        ds.set_status(["nope"], "new")
    with pytest.raises(BadInput):
        ds.set_status(ids, "weird")
    assert_consistent(ds.root)


def test_same_filename_gets_unique_name(ds: Dataset) -> None:
    ds.create_group("g")
    a = ds.add_images("g", [Incoming("x.png", write_tmp(ds, image_bytes(1)))]).added[0]
    b = ds.add_images("g", [Incoming("x.png", write_tmp(ds, image_bytes(2)))]).added[0]
    assert (a.filename, b.filename) == ("x.png", "x-2.png")
    ds.create_group("h")
    c = ds.add_images("h", [Incoming("x.png", write_tmp(ds, image_bytes(3)))]).added[0]
    ds.move([c.id], "g")
    assert ds.get_image(c.id).filename == "x-3.png"


def test_crash_between_commit_and_file_move_rolls_forward(ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    ds.create_group("g")
    ids = [i.id for i in add(ds, "g", list(range(10)))]

    def crash(self: Journal, ch: object, what: str) -> None:
        raise SystemExit("simulated crash after commit")

    monkeypatch.setattr(Journal, "settle", crash)
    with pytest.raises(SystemExit):
        ds.set_status(ids, "deleted")
    monkeypatch.undo()
    ds.close()
    # The catalog says deleted, the files are still in the folder: a restart completes the moves.
    again = Dataset(ds.root, max_image_pixels=1_000_000)
    assert again.totals()["deleted"] == 10
    assert list((ds.root / "g").iterdir()) == []
    again.close()
    assert_consistent(ds.root)


def test_crash_before_commit_changes_nothing(ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    ds.create_group("g")
    ids = [i.id for i in add(ds, "g", [1, 2])]
    real = Change.move
    calls = {"n": 0}

    def failing(self, src, dst):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real(self, src, dst)

    monkeypatch.setattr(Change, "move", failing)
    with pytest.raises(OSError):
        ds.set_status(ids, "new")
    monkeypatch.undo()
    assert ds.totals() == {"group": 2, "new": 0, "deleted": 0}
    assert_consistent(ds.root)


def test_rescan_adopts_hand_added_files_and_reports_vanished(ds: Dataset) -> None:
    ds.create_group("g")
    imgs = add(ds, "g", [1, 2])
    (ds.root / "g" / "img1.png").unlink()
    (ds.root / "new_group" / "sub").mkdir(parents=True)
    (ds.root / "new_group" / "sub" / "dropped.png").write_bytes(image_bytes(9))
    (ds.root / "new_group" / "notes.txt").write_text("not an image")
    report = ds.rescan()
    assert report["adopted"] == 1
    assert set(report["groups_adopted"]) == {"new_group", "new_group/sub"}
    assert report["vanished"] == ["g/img1.png"]
    assert any("notes.txt" in s["name"] for s in report["skipped"])
    assert ds.list_images("new_group/sub")[0] == 1
    with pytest.raises(NotFound):
        ds.get_image(imgs[0].id)
    # The vanished image's hash is still known: it is never taken in again.
    assert ds.known_sha(imgs[0].sha256)


def test_thumbnail_cached(ds: Dataset) -> None:
    ds.create_group("g")
    img = add(ds, "g", [1])[0]
    t = ds.thumb_path(img.id)
    assert t.read_bytes()[:3] == b"\xff\xd8\xff"
    assert ds.thumb_path(img.id) == t


def test_safe_filename() -> None:
    assert dataset_mod.safe_filename("../../etc/passwd", ".png", "id") == "passwd.png"
    assert dataset_mod.safe_filename("a<b>:c.jpg", ".jpg", "id") == "a_b__c.jpg"
    assert dataset_mod.safe_filename("", ".png", "id") == "id.png"
    assert dataset_mod.safe_filename(".hidden.png", ".png", "id") == "hidden.png"
