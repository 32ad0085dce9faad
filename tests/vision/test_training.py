"""Engine, training modes, run records, promotion and the offline fallback, on a tiny ConvNeXtV2."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from cvtools.settings import Settings
from cvtools.web import create_app

from ..conftest import fill_classes, run_training, wait_jobs
from ..helpers import TestClient, class_image


def test_train_params_defaults(tiny_client: TestClient) -> None:
    r = tiny_client.get("/api/train/params").json()
    assert r["mode"] == "auto" and r["resolved_mode"] == "head"
    p = r["params"]
    assert (p["per_device_train_batch_size"], p["gradient_accumulation_steps"], p["per_device_eval_batch_size"]) == (
        16,
        4,
        16,
    )
    assert (p["num_train_epochs"], p["warmup_ratio"], p["logging_steps"]) == (10, 0.1, 10)
    assert set(r["help"]) == set(p)


def test_head_mode_trains_caches_and_promotes(tiny_client: TestClient, tiny_settings: Settings) -> None:
    fill_classes(tiny_client)
    run = run_training(tiny_client, "head", epochs=30)
    assert run["state"] == "done" and run["mode"] == "head"
    assert run["classes"] == ["blue", "green", "red"]
    assert len(run["epochs"]) == 30
    assert set(run["epochs"][0]) >= {"epoch", "accuracy", "loss", "seconds"}
    assert run["best"]["accuracy"] >= 0.9
    assert run["embedded_images"] == 36
    assert len(run["confusion"]) == 3 and sum(map(sum, run["confusion"])) == run["counts"]["val"]
    assert set(run["per_group"]["red"]) == {"precision", "recall", "support"}
    folder = tiny_settings.state_dir / "models" / run["id"]
    assert (folder / "run.json").is_file() and (folder / "head" / "head.safetensors").is_file()
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.bin"))

    # A second run on unchanged images computes zero new embeddings.
    again = run_training(tiny_client, "head", epochs=5)
    assert again["embedded_images"] == 0
    # Adding an image computes it (and at most the image whose split place it took).
    tiny_client.post("/api/groups/red/images", files=[("files", ("x.png", class_image("red", 99), "image/png"))])
    assert run_training(tiny_client, "head", epochs=5)["embedded_images"] in (1, 2)

    assert tiny_client.get("/api/status").json()["model"]["run"] is None
    r = tiny_client.post("/api/models/promote", json={"run": run["id"], "build_index": False})
    assert r.json()["production"] == run["id"]
    models = tiny_client.get("/api/models").json()
    assert models["production"] == run["id"] and {m["run"] for m in models["models"]} >= {run["id"], again["id"]}
    status = tiny_client.get("/api/status").json()["model"]
    assert status["run"] == run["id"] and status["classes"] == ["blue", "green", "red"]
    sv = tiny_client.app.state.services  # type: ignore[attr-defined]
    img = Image.open(__import__("io").BytesIO(class_image("green", 500))).convert("RGB")
    ranked = sv.classifier.classify([img])[0]
    assert ranked[0][0] == "green" and abs(sum(p for _, p in ranked) - 1) < 1e-5


def test_finetune_mode(tiny_client: TestClient, tiny_settings: Settings) -> None:
    fill_classes(tiny_client, per_class=10, classes=("red", "blue"))
    run = run_training(
        tiny_client,
        "finetune",
        num_train_epochs=4,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        learning_rate=2e-3,
        logging_steps=1,
    )
    assert run["mode"] == "finetune" and len(run["epochs"]) == 4
    assert run["best"]["accuracy"] >= 0.75
    folder = tiny_settings.state_dir / "models" / run["id"] / "model"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert tiny_client.post("/api/models/promote", json={"run": run["id"]}).status_code == 200
    sv = tiny_client.app.state.services  # type: ignore[attr-defined]
    img = Image.open(__import__("io").BytesIO(class_image("blue", 300))).convert("RGB")
    assert sv.classifier.classify([img])[0][0][0] in ("red", "blue")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": "ten"}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"head_learning_rate": -1}, "head_learning_rate"),
        ({"learning_rate": 5.0}, "learning_rate"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
        ({"gradient_accumulation_steps": True}, "gradient_accumulation_steps"),
        ({"num_train_epochs": 100000}, "num_train_epochs"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
        ({"logging_steps": None}, "logging_steps"),
        ({"tta_flip": "yes"}, "tta_flip"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_params_422_names_parameter(tiny_client: TestClient, params: dict, name: str) -> None:
    fill_classes(tiny_client, per_class=3, classes=("red", "blue"))
    r = tiny_client.post("/api/train", json={"mode": "head", "params": params})
    assert r.status_code == 422 and f"params.{name}" in r.json()["detail"], r.text
    assert tiny_client.get("/api/train/runs").json()["runs"] == []


def test_training_needs_two_groups(tiny_client: TestClient) -> None:
    assert tiny_client.post("/api/train", json={"mode": "head"}).status_code == 400
    fill_classes(tiny_client, per_class=3, classes=("red",))
    r = tiny_client.post("/api/train", json={"mode": "head"})
    assert r.status_code == 400 and "2 groups" in r.json()["detail"]
    tiny_client.post("/api/groups", json={"name": "lonely"})
    tiny_client.post("/api/groups/lonely/images", files=[("files", ("a.png", class_image("blue", 1), "image/png"))])
    r = tiny_client.post("/api/train", json={"mode": "head"})
    assert r.status_code == 400 and "lonely" in r.json()["detail"]
    r = tiny_client.post("/api/train", json={"mode": "sideways"})
    assert r.status_code == 422 and "mode" in r.json()["detail"]


def test_conflict_and_cancel(tiny_client: TestClient) -> None:
    fill_classes(tiny_client, per_class=6, classes=("red", "blue"))
    r = tiny_client.post(
        "/api/train",
        json={
            "mode": "finetune",
            "params": {"num_train_epochs": 200, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1},
        },
    )
    assert r.status_code == 202
    job_id, run = r.json()["job"], r.json()["run"]
    assert tiny_client.post("/api/train", json={"mode": "head"}).status_code == 409
    # The server keeps answering while training runs.
    t0 = time.monotonic()
    assert tiny_client.get("/api/groups").status_code == 200
    assert time.monotonic() - t0 < 2
    deadline = time.monotonic() + 60
    while (
        tiny_client.get(f"/api/jobs/{job_id}").json()["progress"]["message"] in ("Preparing", "")
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    tiny_client.post(f"/api/jobs/{job_id}/cancel")
    while tiny_client.get(f"/api/jobs/{job_id}").json()["state"] not in ("cancelled", "failed", "done"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert tiny_client.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled"
    assert tiny_client.get(f"/api/train/runs/{run}").json()["state"] == "cancelled"
    # Head mode cancel too.
    r = tiny_client.post("/api/train", json={"mode": "head", "params": {"epochs": 2000}})
    job_id = r.json()["job"]
    time.sleep(0.5)
    tiny_client.post(f"/api/jobs/{job_id}/cancel")
    wait_jobs(tiny_client, 60)
    assert tiny_client.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled"


def test_promote_errors(tiny_client: TestClient) -> None:
    assert tiny_client.post("/api/models/promote", json={"run": "nope"}).status_code == 404
    assert tiny_client.post("/api/models/promote", json={"run": "../etc"}).status_code == 404
    assert tiny_client.get("/api/train/runs/nope").status_code == 404


def test_promote_and_rollback_while_classifying(tiny_client: TestClient) -> None:
    fill_classes(tiny_client, per_class=6, classes=("red", "blue"))
    a = run_training(tiny_client, "head", epochs=5)["id"]
    tiny_client.post("/api/groups", json={"name": "green"})
    tiny_client.post(
        "/api/groups/green/images",
        files=[("files", (f"g{i}.png", class_image("green", i), "image/png")) for i in range(6)],
    )
    b = run_training(tiny_client, "head", epochs=5)["id"]
    sv = tiny_client.app.state.services  # type: ignore[attr-defined]
    sv.models.promote(a)
    img = Image.open(__import__("io").BytesIO(class_image("red", 77))).convert("RGB")
    errors: list[BaseException] = []
    answers: list[int] = []
    stop = threading.Event()

    def classify_loop() -> None:
        while not stop.is_set():
            try:
                answers.append(len(sv.classifier.classify([img])[0]))
            except BaseException as exc:
                errors.append(exc)

    t = threading.Thread(target=classify_loop)
    t.start()
    for run in (b, a, b, a):  # promote, roll back, again
        assert tiny_client.post("/api/models/promote", json={"run": run, "build_index": False}).status_code == 200
        time.sleep(0.05)
    stop.set()
    t.join()
    assert not errors and answers and set(answers) <= {2, 3}
    assert tiny_client.get("/api/models").json()["production"] == a


def test_corrupt_production_falls_back_with_message(tiny_client: TestClient, tiny_settings: Settings) -> None:
    fill_classes(tiny_client, per_class=4, classes=("red", "blue"))
    run = run_training(tiny_client, "head", epochs=3)["id"]
    tiny_client.post("/api/models/promote", json={"run": run, "build_index": False})
    (tiny_settings.state_dir / "models" / run / "head" / "head.safetensors").write_bytes(b"garbage")
    with TestClient(create_app(tiny_settings)) as c:
        wait_jobs(c)
        sv = c.app.state.services  # type: ignore[attr-defined]
        assert sv.models.production() is None
        status = c.get("/api/status").json()["model"]
        assert status["run"] is None and "could not be loaded" in status["message"]
        assert c.get("/").status_code == 200


def test_offline_fallback_backbone(dataset_dir: Path) -> None:
    s = Settings(dataset_dir=dataset_dir, neuronet="no-such-org/no-such-model", preload_model=True)
    with TestClient(create_app(s)) as c:
        wait_jobs(c, 120)
        model = c.get("/api/status").json()["model"]
        assert model["offline_fallback"] is True and model["backbone"] == "efficientnet-lite0"
        assert "no-such-org/no-such-model" in model["message"]
        page = c.get("/").text
        assert "EfficientNet-Lite0" in page and "fallback-banner" in page
        fill_classes(c, per_class=4, classes=("red", "blue"))
        run = run_training(c, "head", epochs=10, augment_views=1)
        assert run["backbone"] == "efficientnet-lite0" and run["best"]["accuracy"] == 1.0
        # Fine-tuning's defaults are the offline network's (chosen on dev: the original's 5e-5, 10 epochs
        # and 4 accumulated steps left it far below its own probe); what a request sets is kept.
        lite = {"learning_rate": 3e-4, "num_train_epochs": 30, "gradient_accumulation_steps": 1}
        shown = c.get("/api/train/params").json()["params"]
        assert {k: shown[k] for k in lite} == lite and shown["per_device_train_batch_size"] == 16
        tuned = run_training(c, "finetune", num_train_epochs=1, per_device_train_batch_size=4)
        assert tuned["state"] == "done" and len(tuned["epochs"]) == 1
        assert {k: tuned["params"][k] for k in lite} == {**lite, "num_train_epochs": 1}


def test_an_image_that_no_longer_decodes_fails_the_job_by_name(tiny_client: TestClient) -> None:
    """A Group image overwritten on disk after it was added: the run fails with a message that names it;
    nothing else changes and the app keeps answering."""
    fill_classes(tiny_client, per_class=6)
    victim = tiny_client.get("/api/groups/red/images").json()["images"][0]
    Path(victim["path"]).write_bytes(b"this is no longer a PNG")
    r = tiny_client.post("/api/train", json={"mode": "head", "params": {"epochs": 3}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]
    deadline = time.monotonic() + 120
    while (job := tiny_client.get(f"/api/jobs/{job_id}").json())["state"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["state"] == "failed" and Path(victim["path"]).name in job["error"], job
    assert "Traceback" not in job["error"]
    assert tiny_client.get("/api/status").status_code == 200
