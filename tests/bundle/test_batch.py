"""classify --bundle: on this machine and on Ray Data, the same answers as the app, written as they come,
resumed after a stop without a line lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvtools.bundle import extra
from cvtools.bundle.sink import Sink
from cvtools.settings import PROJECT_ROOT

from .conftest import Trained

ENV = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "CVTOOLS_PRELOAD_MODEL": "false", "RAY_USAGE_STATS_ENABLED": "0"}


def classify(bundle: Path, targets: list[str], out: Path, *extra: str, **kw: object) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cvtools", "classify", "--bundle", str(bundle), *targets, "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT, env=ENV, **kw)  # type: ignore[call-overload, no-any-return]


def rows(out: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    got = {Path(r["path"]).name: r for r in lines}
    assert len(got) == len(lines), "a path was written twice"
    return got


def queries(trained: Trained, tmp_path: Path) -> Path:
    folder = tmp_path / "q"
    folder.mkdir()
    for name, data in trained.images.items():
        (folder / name).write_bytes(data)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def assert_like_app(trained: Trained, got: dict[str, dict]) -> None:
    assert set(got) == {*trained.images, "broken.png"}
    assert got["broken.png"]["error"] and got["broken.png"]["status"] == 415
    for name, app in trained.app_cv.items():
        ranked = got[name]["classification"]
        assert [g for g, _ in ranked] == [g for g, _ in app[1:]]
        assert max(abs(a[1] - b[1]) for a, b in zip(app[1:], ranked, strict=True)) <= 1e-5
        assert abs(got[name]["score"] - app[0][1]) <= 2e-4 and got[name]["calibrated"] is True


def test_local_jsonl_and_resume(trained: Trained, tmp_path: Path) -> None:
    folder, out = queries(trained, tmp_path), tmp_path / "out.jsonl"
    proc = classify(trained.bundle, [str(folder)], out)
    assert proc.returncode == 0, proc.stderr
    full = rows(out)
    assert_like_app(trained, full)
    # A stop half-way: the first half written, the next line cut short.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:15]) + lines[15][:20])
    proc = classify(trained.bundle, [str(folder)], out)
    assert proc.returncode == 0, proc.stderr
    assert "15 already in" in proc.stderr
    assert rows(out) == full


def test_csv_output(trained: Trained, tmp_path: Path) -> None:
    folder, out = queries(trained, tmp_path), tmp_path / "out.csv"
    assert classify(trained.bundle, [str(folder)], out).returncode == 0
    import csv

    table = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    assert set(table) == {*trained.images, "broken.png"} and table["broken.png"]["error"]
    name = sorted(trained.app_cv)[0]
    assert table[name]["group"] == trained.app_cv[name][1][0]


def test_refuses_a_corrupt_bundle(trained: Trained, tmp_path: Path) -> None:
    proc = classify(tmp_path / "missing-bundle", [str(queries(trained, tmp_path))], tmp_path / "o.jsonl")
    assert proc.returncode == 2 and "no bundle at" in proc.stderr and "Traceback" not in proc.stderr


def test_sink_repairs_a_torn_line(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    sink = Sink(out)
    sink.write([{"path": "/a", "x": 1}, {"path": "/b", "x": 2}])
    with open(out, "a") as fh:
        fh.write('{"path": "/c", "x"')
    assert sink.done() == {"/a", "/b"}
    assert out.read_text().count("\n") == 2 and out.read_text().endswith("\n")


needs_ray = pytest.mark.skipif(not extra.available(), reason=f"Ray is not installed ({extra.INSTALL})")


def test_without_ray_a_clear_message(trained: Trained, tmp_path: Path) -> None:
    """The optional extra missing: one sentence, exit 2, no traceback; the same command without --ray works."""
    code = "import sys; sys.modules['ray'] = None\nfrom cvtools.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    folder = queries(trained, tmp_path)
    for args in (["serve", "--bundle", str(trained.bundle)], ["classify", "--bundle", str(trained.bundle), "--ray"]):
        extra_args = [str(folder), "--out", str(tmp_path / "o.jsonl")] if args[0] == "classify" else []
        proc = subprocess.run(
            [sys.executable, "-c", code, *args, *extra_args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=PROJECT_ROOT,
            env=ENV,
        )
        assert proc.returncode == 2 and "requirements-ray.txt" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


@needs_ray
def test_ray_data_same_answers(trained: Trained, tmp_path: Path) -> None:
    folder, out = queries(trained, tmp_path), tmp_path / "ray.jsonl"
    proc = classify(trained.bundle, [str(folder)], out, "--ray", "--workers", "2", "--batch-size", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_like_app(trained, rows(out))


@needs_ray
def test_ray_stop_and_resume(trained: Trained, tmp_path: Path) -> None:
    """The whole run killed (driver and workers) while it writes: nothing written is lost, the next
    run adds only what is missing."""
    folder = queries(trained, tmp_path)
    for i in range(6):  # 6 x 41 images
        for name, data in trained.images.items():
            (folder / f"copy{i}-{name}").write_bytes(data)
    out = tmp_path / "ray.jsonl"
    cmd = [sys.executable, "-m", "cvtools", "classify", "--bundle", str(trained.bundle), str(folder)]
    cmd += ["--out", str(out), "--ray", "--workers", "2", "--batch-size", "4"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=ENV, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not out.is_file() or out.read_text().count("\n") < 20):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = Sink(out).done()
    total = len(trained.images) * 7 + 1  # the originals, six copies of each, and broken.png
    assert 20 <= len(before) < total, len(before)
    proc2 = classify(trained.bundle, [str(folder)], out, "--ray", "--workers", "2")
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    got = rows(out)
    assert len(got) == total
    for name in trained.images:
        assert got[f"copy3-{name}"]["classification"] == got[name]["classification"]


def map_workers() -> list[int]:
    """PIDs of Ray Data's bundle workers (their process title starts with ray::MapWorker)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@needs_ray
def test_ray_worker_dies_mid_batch(trained: Trained, tmp_path: Path) -> None:
    """One bundle worker killed while the run goes on: Ray retries its batch on a new worker; every
    image is answered exactly once."""
    folder = queries(trained, tmp_path)
    for i in range(4):
        for name, data in trained.images.items():
            (folder / f"copy{i}-{name}").write_bytes(data)
    out = tmp_path / "ray.jsonl"
    cmd = [sys.executable, "-m", "cvtools", "classify", "--bundle", str(trained.bundle), str(folder)]
    cmd += ["--out", str(out), "--ray", "--workers", "2", "--batch-size", "4"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=ENV, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not out.is_file() or out.read_text().count("\n") < 12):
        time.sleep(0.05)
    victims = map_workers()
    assert victims, "no Ray Data worker found"
    os.kill(victims[0], signal.SIGKILL)
    assert proc.wait(240) == 0
    got = rows(out)
    assert len(got) == len(trained.images) * 5 + 1
    assert all("classification" in r for n, r in got.items() if n != "broken.png")
