"""Unknown detection, parent fallback, POST /api/classify and the batch CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cvtools.settings import PROJECT_ROOT, Settings
from cvtools.vision.calibration import FEATURE_WEIGHT, GROUP_WEIGHT, MIN_IMAGES, RESIDUAL_WEIGHT, calibrate
from cvtools.vision.openset import HELD_OUT_SCALE, Calibration, ancestors, subtree_sums
from cvtools.web import create_app

from ..conftest import run_training, wait_jobs
from ..helpers import TestClient, class_image, image_bytes


def test_tree_arithmetic() -> None:
    assert ancestors("a/b/c") == ["a/b", "a"] and ancestors("a") == []
    classes = ["animals/cats", "animals/dogs", "cars"]
    sums = subtree_sums(np.array([[0.45, 0.4, 0.15]]), classes)
    assert set(sums) == {"animals"} and abs(float(sums["animals"][0]) - 0.85) < 1e-9


def _clusters(seed: int = 0, centers: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Three separated clusters in 16-d and softmax probabilities that fall off with the distance."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 16)) * 4 if centers is None else centers
    x = np.concatenate([c + rng.normal(size=(200, 16)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(3), 200)
    logits = -((x[:, None, :] - centers[None]) ** 2).sum(-1) / 8
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return x, y, probs / probs.sum(1, keepdims=True), centers


def test_judge_fallback_unknown_and_distance() -> None:
    classes = ["animals/cats", "animals/dogs", "cars"]
    x, y, probs, centers = _clusters()
    cal = calibrate(probs, y, classes, x, [f"id{i}" for i in range(len(x))], target_frr=0.05)
    assert set(cal.parents) == {"animals"} and 0 < cal.limit < 1
    sure = cal.judge(np.array([0.98, 0.01, 0.01]), centers[0])
    assert not sure["unknown"] and sure["fallback"] is None and sure["score"] < 1
    assert sure["nearest"]["group"] == "animals/cats" and sure["nearest"]["id"] in {f"id{i}" for i in range(200)}
    # torn between the two leaves of one parent, close to both: the parent answers
    between = (centers[0] + centers[1]) / 2
    leaf_unsure = cal.judge(np.array([0.5, 0.5, 0.0]), between)
    assert not leaf_unsure["unknown"] and leaf_unsure["fallback"] == "animals", leaf_unsure
    lost = cal.judge(np.array([0.34, 0.33, 0.33]), between + 40)
    assert lost["unknown"] and "unlike the known images" in lost["reason"] and lost["score"] > 1
    far = cal.judge(np.array([0.02, 0.02, 0.96]), centers[2] * -6)
    assert far["unknown"] and far["fallback"] is None and far["nearest"]["distance"] > cal.dist_ref[-1]
    # saved and loaded: the same answers
    folder = Path(tempfile.mkdtemp())
    cal.save(folder)
    again = Calibration.load(folder)
    assert again is not None and again.judge(np.array([0.34, 0.33, 0.33]), between + 40)["score"] == lost["score"]


def test_calibration_rates_on_synthetic_clusters() -> None:
    x, y, probs, _ = _clusters()
    cal = calibrate(probs, y, ["a", "b", "c"], x, [str(i) for i in range(len(x))], target_frr=0.05)
    # fresh known images from the same clusters: about 5 % x HELD_OUT_SCALE rejected
    x2, _, probs2, _ = _clusters(seed=1, centers=_clusters()[3])
    rng = np.random.default_rng(1)
    known = [cal.judge(p, v)["unknown"] for p, v in zip(probs2, x2, strict=True)]
    assert 0.02 <= np.mean(known) <= 0.2
    far = rng.normal(size=(50, 16)).astype(np.float32) * 4 + 30
    lost = np.full(3, 1 / 3)
    assert np.mean([cal.judge(lost, v)["unknown"] for v in far]) > 0.9


@pytest.fixture
def nested(tiny_settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    s = tiny_settings.model_copy(update={"cv_unknown": True})
    with TestClient(create_app(s)) as c:
        wait_jobs(c)
        c.post("/api/groups", json={"name": "warm"})
        c.post("/api/groups", json={"name": "cool"})
        for parent, leaf, colour in (("warm", "red", "red"), ("cool", "blue", "blue"), ("cool", "green", "green")):
            c.post("/api/groups", json={"name": leaf, "parent": parent})
            files = [("files", (f"{leaf}{i}.png", class_image(colour, i), "image/png")) for i in range(12)]
            assert len(c.post(f"/api/groups/{parent}/{leaf}/images", files=files).json()["added"]) == 12
        run = run_training(c, "head", epochs=20)
        assert run["calibration"]["distance"] > 0 and set(run["calibration"]["parents"]) == {"cool", "warm"}
        c.post("/api/models/promote", json={"run": run["id"], "build_index": False})
        yield c


def test_classify_api_known_and_unknown(nested: TestClient, tmp_path: Path) -> None:
    known = [
        ("files", (f"k{i}.png", class_image(c, 500 + i), "image/png"))
        for c in ("red", "blue", "green")
        for i in range(4)
    ]
    r = nested.post("/api/classify", files=known)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == 12 and all(
        set(x) >= {"name", "classification", "unknown", "reason", "fallback", "nearest"} for x in res
    )
    assert sum(x["unknown"] for x in res) <= 2
    assert all(x["nearest"]["distance"] >= 0 for x in res)
    # noise over colours none of the groups has (the tiny random network mostly sees colour)
    odd = [(128, 128, 128), (230, 230, 40), (230, 40, 230), (40, 230, 230)]
    noise = [
        ("files", (f"n{i}.png", image_bytes(900 + i, size=(72, 72), color=odd[i % 4]), "image/png")) for i in range(8)
    ]
    res_noise = nested.post("/api/classify", files=noise).json()["results"]
    # Not a confident leaf: unknown, or only its parent (teal lies between blue and green: "probably cool")
    flagged = [x["unknown"] or x["fallback"] is not None for x in res_noise]
    why = [(x["score"], x["reason"], x["fallback"]) for x in res_noise]
    assert sum(flagged) >= 6 and sum(x["unknown"] for x in res_noise) >= 3, why
    # JSON paths under the /cv policy, with a per-item error instead of a failed request.
    path = nested.get("/api/groups/cool/blue/images?limit=1").json()["images"][0]["path"]
    res = nested.post("/api/classify", json={"paths": [path, "/etc/passwd", "http://127.0.0.1:1/x.png"]}).json()[
        "results"
    ]
    assert res[0]["classification"][0][0] == "cool/blue"
    assert res[1]["status"] == 403 and res[2]["status"] == 403
    assert nested.post("/api/classify", json={"paths": []}).status_code == 400
    assert (
        nested.post("/api/classify", content=b"{bad json", headers={"content-type": "application/json"}).status_code
        == 400
    )
    # /cv with the opt-in unknown entry first.
    cv = nested.get("/cv?" + path).json()
    assert cv[0][0] == "unknown" and cv[1][0] == "cool/blue"


def test_cli_matches_api(nested: TestClient, tiny_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    for i, c in enumerate(("red", "blue", "green")):
        (folder / f"{c}.png").write_bytes(class_image(c, 700 + i))
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "results.csv"
    env = {
        "CVTOOLS_NEURONET": tiny_settings.neuronet,
        "CVTOOLS_PRELOAD_MODEL": "false",
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cvtools",
            "classify",
            str(folder),
            "--dataset",
            str(tiny_settings.dataset_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 images classified" in proc.stdout and "4/4" in proc.stderr
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    assert rows["broken.png"]["error"]
    api = nested.post(
        "/api/classify",
        files=[("files", (n, (folder / n).read_bytes(), "image/png")) for n in ("red.png", "blue.png", "green.png")],
    ).json()["results"]
    for r in api:
        assert rows[r["name"]]["group"] == r["classification"][0][0]
        assert abs(float(rows[r["name"]]["probability"]) - r["classification"][0][1]) < 1e-4
        assert rows[r["name"]]["unknown"] == str(r["unknown"])


def test_limit_follows_the_known_strangeness_and_survives_saving(tmp_path: Path) -> None:
    x, y, probs, _ = _clusters()
    cal = calibrate(probs, y, ["a", "b", "c"], x, [str(i) for i in range(len(x))], target_frr=0.05)
    assert len(cal.strange_ref) == len(x) and np.all(np.diff(cal.strange_ref) >= 0)
    # the limit rejects HELD_OUT_SCALE x the target of the known images' own strangeness
    share = float((cal.strange_ref > cal.limit).mean())
    assert share <= 0.05 * HELD_OUT_SCALE and cal.limit_at(0.2) < cal.limit < cal.limit_at(0.01)
    cal.save(tmp_path)
    again = Calibration.load(tmp_path)
    assert again is not None and np.array_equal(again.strange_ref, cal.strange_ref) and again.limit == cal.limit
    # a calibration saved before strange_ref existed still loads, and keeps its limit
    with np.load(tmp_path / "calibration.npz") as z:
        older = {k: z[k] for k in z.files if k != "strange_ref"}
    np.savez(tmp_path / "calibration.npz", **older)
    old = Calibration.load(tmp_path)
    assert old is not None and len(old.strange_ref) == 0 and old.limit_at(0.2) == cal.limit


def test_ranks_are_mixed_with_the_chosen_weights_and_older_runs_keep_theirs(tmp_path: Path) -> None:
    x, y, probs, _ = _clusters()
    cal = calibrate(probs, y, ["a", "b", "c"], x, [str(i) for i in range(len(x))], target_frr=0.05)
    assert (cal.feature_weight, cal.group_weight) == (RESIDUAL_WEIGHT, GROUP_WEIGHT) and cal.residual is not None
    top = np.array([0.99, 0.4])  # sure but far off the known images' directions; unsure but on them
    signal = np.array([cal.res_ref[-1] * 2, cal.res_ref[0]])
    group = np.array([cal.group_ref[-1] * 2, cal.group_ref[0]])
    with pytest.raises(ValueError):
        cal.strangeness(top, signal)  # a three-way calibration without its third signal: refused, not guessed
    mixed, r_top, r_feat, r_group = cal.strangeness(top, signal, group)
    w_top = 1 - RESIDUAL_WEIGHT - GROUP_WEIGHT
    assert np.allclose(mixed, w_top * r_top + RESIDUAL_WEIGHT * r_feat + GROUP_WEIGHT * r_group)
    assert r_feat.tolist() == [1, 0] and r_group.tolist() == [1, 0]
    assert mixed[0] > mixed[1]  # the feature signals weigh more than the probability
    cal.save(tmp_path)
    again = Calibration.load(tmp_path)
    assert again is not None and again.group_weight == GROUP_WEIGHT and again.group_residual is not None
    assert np.allclose(again.residual.norms(x[:5]), cal.residual.norms(x[:5]), atol=1e-5)  # type: ignore[union-attr]
    assert np.allclose(again.group_signal(cal.space(x[:5])), cal.group_signal(cal.space(x[:5])), atol=1e-5)  # type: ignore[arg-type]
    assert np.allclose(again.strangeness(top, signal, group)[0], mixed) and again.limit == cal.limit
    # version 3 (before the group residual) mixed the residual's rank with the probability's: 0.8 / 0.2
    meta = json.loads((tmp_path / "calibration.json").read_text())
    meta = {**{k: v for k, v in meta.items() if k != "group_weight"}, "version": 3, "feature_weight": FEATURE_WEIGHT}
    (tmp_path / "calibration.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "calibration.npz") as z:
        older = {k: z[k] for k in z.files if not k.startswith("group_")}
    np.savez(tmp_path / "calibration.npz", **older)
    v3 = Calibration.load(tmp_path)
    assert v3 is not None and v3.group_residual is None and v3.group_signal(cal.space(x[:1])) is None
    mixed3 = v3.strangeness(top, signal)[0]
    assert np.allclose(mixed3, (1 - FEATURE_WEIGHT) * r_top + FEATURE_WEIGHT * r_feat)
    # a run calibrated before the weight existed mixed its ranks 0.5 / 0.5 (its limit was set so)
    del meta["feature_weight"]
    (tmp_path / "calibration.json").write_text(json.dumps(meta))
    old = Calibration.load(tmp_path)
    assert old is not None and np.allclose(old.strangeness(top, signal)[0], (r_top + r_feat) / 2)


def test_the_group_residual_finds_what_no_group_holds() -> None:
    """Two groups, each on its own plane of 40-d: new images on either plane stay within the known images'
    held-out group residuals; an image that mixes both lies in neither group's plane."""
    rng = np.random.default_rng(0)
    planes = [rng.normal(size=(2, 40)) for _ in range(2)]

    def images(n: int) -> np.ndarray:
        x = np.concatenate([rng.normal(size=(n, 2)) @ p + 3 * p[0] for p in planes])
        return (x + rng.normal(size=x.shape) * 0.02).astype(np.float32)

    x, y = images(150), np.repeat([0, 1], 150)
    probs = np.eye(2, dtype=np.float32)[y] * 0.9 + 0.05
    cal = calibrate(probs, y, ["a", "b"], x, [str(i) for i in range(len(x))], target_frr=0.05)
    assert cal.group_residual is not None and len(cal.group_ref) == 300 and np.all(np.diff(cal.group_ref) >= 0)
    fresh = images(50)
    assert np.mean(cal.group_residual.norms(cal.space(fresh)) <= cal.group_ref[-1]) >= 0.95
    mixed = cal.space((fresh[:50] + fresh[50:]) / 2)
    assert np.mean(cal.group_residual.norms(mixed) > cal.group_ref[-1]) >= 0.9
    assert np.median(cal.group_residual.norms(cal.space(x))) < np.median(cal.group_ref)  # its own: held out
    judged = cal.judge(np.array([0.5, 0.5]), (x[0] + x[150]) / 2)
    assert judged["unknown"] and "from each group's own images than" in judged["reason"]


def test_a_run_calibrated_before_the_residual_ranks_the_nearest_distance(tmp_path: Path) -> None:
    x, y, probs, centers = _clusters()
    calibrate(probs, y, ["a", "b", "c"], x, [str(i) for i in range(len(x))], target_frr=0.05).save(tmp_path)
    meta = json.loads((tmp_path / "calibration.json").read_text())
    meta = {k: v for k, v in meta.items() if k not in ("feature_weight", "group_weight")}
    meta = {**meta, "version": 2, "distance_weight": 0.8}
    (tmp_path / "calibration.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "calibration.npz") as z:
        older = {k: z[k] for k in z.files if not k.startswith(("res_", "group_"))}
    np.savez(tmp_path / "calibration.npz", **older)
    old = Calibration.load(tmp_path)
    assert old is not None and old.residual is None and old.feature_weight == 0.8
    dist = np.array([old.dist_ref[-1] * 2])
    assert old.strangeness(np.array([0.9]), old.signal(x[:1], dist))[2][0] == 1.0  # the distance's rank
    lost = old.judge(np.array([0.34, 0.33, 0.33]), (centers[0] + centers[1]) / 2 + 40)
    assert lost["unknown"] and "to the nearest one is larger than" in lost["reason"]
    meta["version"] = 1  # a layout this code does not know: no calibration, rather than a wrong one
    (tmp_path / "calibration.json").write_text(json.dumps(meta))
    assert Calibration.load(tmp_path) is None


def test_the_residual_of_known_images_is_held_out_and_small_datasets_do_without() -> None:
    rng = np.random.default_rng(0)
    # 300 images on a 5-d subspace of 200-d, a little noise beside it
    x = (rng.normal(size=(300, 5)) @ rng.normal(size=(5, 200)) + rng.normal(size=(300, 200)) * 0.05).astype(np.float32)
    y, probs = np.zeros(300, int), np.ones((300, 1), np.float32)
    cal = calibrate(probs, y, ["a"], x, [str(i) for i in range(300)], target_frr=0.05)
    assert cal.residual is not None and len(cal.res_ref) == 300 and np.all(np.diff(cal.res_ref) >= 0)
    z = cal.space(x)
    # each known image measured without itself: larger than its residual under directions fitted with it
    assert np.median(cal.res_ref) > np.median(cal.residual.norms(z))
    off = cal.space(rng.normal(size=(20, 200)).astype(np.float32))  # not on the known subspace
    assert np.all(cal.residual.norms(off) > cal.res_ref[-1])
    small = calibrate(
        probs[: MIN_IMAGES - 1], y[: MIN_IMAGES - 1], ["a"], x[: MIN_IMAGES - 1], list("abcdefghi"), target_frr=0.05
    )
    assert small.residual is None and len(small.res_ref) == 0 and small.summary()["residual"] is None


def test_group_residuals_equal_the_smallest_of_each_groups_own_residual() -> None:
    """GroupResiduals works through products with the stacked bases (no images x groups x features array);
    it must equal measuring each group's Residual apart and taking the smallest, zero rows included."""
    from cvtools.vision.residual import GroupResiduals, Residual

    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 20)).astype(np.float32)
    bases = np.stack([np.linalg.qr(rng.normal(size=(20, 3)))[0].T for _ in range(4)]).astype(np.float32)
    bases[2, 1:] = 0  # a small group: one direction
    bases[3] = 0  # a group of one image: its mean alone
    z = rng.normal(size=(9, 20)).astype(np.float32)
    apart = np.stack([Residual(means[g], bases[g]).norms(z) for g in range(4)], 1)
    assert np.allclose(GroupResiduals(means, bases).norms(z), apart.min(1), atol=1e-4)
    assert np.allclose(GroupResiduals(means[3:], bases[3:]).norms(z), np.linalg.norm(z - means[3], axis=1), atol=1e-4)
