"""The original CV Tools' classes.dat brought in: statuses applied (Deleted, New from its web folder,
Group into a group it had), moved folders mapped, every unusable path reported; a hostile pickle and
a file of another format refused with nothing changed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from cvtools.__main__ import main
from cvtools.migrate import read_classes

from .conftest import wait_jobs
from .helpers import TestClient, class_image, snapshot


class Hostile:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/cvtools-pwned",))


def _original(client: TestClient, old_root: Path, web: Path) -> bytes:
    """A classes.dat as the original wrote it: absolute paths under its own dataset folder (here
    another place: the folder moved since) and under its web folder, statuses as words."""
    for g in ("cats", "dogs"):
        client.post("/api/groups", json={"name": g})
        colour = "red" if g == "cats" else "blue"
        files = [("files", (f"{g}{i}.png", class_image(colour, i), "image/png")) for i in range(3)]
        client.post(f"/api/groups/{g}/images", files=files)
    grabbed = web / "cats-1700000000"
    grabbed.mkdir(parents=True)
    (grabbed / "found.png").write_bytes(class_image("green", 7))
    classes = {
        "cats": {
            f"{old_root}/cats/cats0.png": "Group",
            f"{old_root}/cats/cats1.png": "Deleted",
            "/home/someone/cvtools/web/cats-1700000000/found.png": "New",
            f"{old_root}/cats/gone.png": "Group",
        },
        "dogs": {f"{old_root}/dogs/dogs2.png": "Deleted"},
        "birds": {"/elsewhere/web/birds-1/lost.png": "New"},
    }
    return pickle.dumps(classes, protocol=2)


def _by_name(client: TestClient, group: str, status: str) -> set[str]:
    return {i["filename"] for i in client.get(f"/api/groups/{group}/images?status={status}").json()["images"]}


def test_import_from_the_page(client: TestClient, tmp_path: Path) -> None:
    data = _original(client, Path("/old/dataset"), tmp_path / "web")
    r = client.post(
        "/api/import-original", files={"file": ("classes.dat", data)}, data={"web_dir": str(tmp_path / "web")}
    )
    assert r.status_code == 202, r.text
    wait_jobs(client)
    job = client.get(f"/api/jobs/{r.json()['job']}").json()
    assert job["state"] == "done", job
    report = job["result"]
    assert report["changed"]["deleted"] == 2 and report["added"]["new"] == 1 and report["unchanged"] == 1
    assert report["groups_created"] == ["birds"]
    assert {s["path"].rsplit("/", 1)[1] for s in report["skipped"]} == {"gone.png", "lost.png"}
    assert _by_name(client, "cats", "deleted") == {"cats1.png"} and _by_name(client, "dogs", "deleted") == {"dogs2.png"}
    assert _by_name(client, "cats", "new") == {"found.png"}
    assert _by_name(client, "cats", "group") == {"cats0.png", "cats2.png"}
    again = client.post(
        "/api/import-original", files={"file": ("classes.dat", data)}, data={"web_dir": str(tmp_path / "web")}
    )
    wait_jobs(client)
    report = client.get(f"/api/jobs/{again.json()['job']}").json()["result"]
    assert report["unchanged"] == 4 and sum(report["added"].values()) == sum(report["changed"].values()) == 0


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps({"cats": {"/a.png": Hostile()}}),
        pickle.dumps(Hostile()),
        pickle.dumps(["not", "a", "dict"]),
        pickle.dumps({"cats": {"/a.png": "Maybe"}}),
        b"GIF89a not a pickle",
        b"",
    ],
)
def test_other_files_are_refused_and_change_nothing(client: TestClient, dataset_dir: Path, data: bytes) -> None:
    client.post("/api/groups", json={"name": "cats"})
    before = snapshot(dataset_dir)
    r = client.post("/api/import-original", files={"file": ("classes.dat", data)})
    assert r.status_code == 400 and "classes.dat" in r.json()["detail"], r.text
    assert not Path("/tmp/cvtools-pwned").exists()
    assert snapshot(dataset_dir) == before
    assert [g["name"] for g in client.get("/api/groups").json()["groups"]] == ["cats"]


def test_restricted_unpickler_admits_only_plain_data() -> None:
    assert read_classes(pickle.dumps({"a": {"/x.png": "New"}}, protocol=0)) == {"a": {"/x.png": "new"}}
    with pytest.raises(Exception, match=r"(os|posix)\.system"):
        read_classes(pickle.dumps({"a": {"/x.png": Hostile()}}, protocol=0))


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "dataset"
    (dataset / "cats").mkdir(parents=True)
    (dataset / "cats" / "a.png").write_bytes(class_image("red", 1))
    (dataset / "cats" / "b.png").write_bytes(class_image("red", 2))
    classes = tmp_path / "classes.dat"
    classes.write_bytes(pickle.dumps({"cats": {"/old/cats/a.png": "Deleted", "/old/cats/b.png": "Group"}}))
    assert main(["import-original", str(classes), "--dataset", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "'deleted': 1" in out and "unchanged 1" in out
    assert not (dataset / "cats" / "a.png").exists() and (dataset / "cats" / "b.png").exists()
    hostile = tmp_path / "hostile.dat"
    hostile.write_bytes(pickle.dumps(Hostile()))
    assert main(["import-original", str(hostile), "--dataset", str(dataset)]) == 2
    assert "classes.dat" in capsys.readouterr().err
