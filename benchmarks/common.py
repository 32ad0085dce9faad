"""Shared benchmark helpers: the openclipart drawings and a real dataset + engine built from them."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from cvtools import imaging
from cvtools.dataset import Dataset, Incoming
from cvtools.jobs import JobRunner
from cvtools.schemas import TrainParams
from cvtools.services import Services, build_services
from cvtools.settings import PROJECT_ROOT, Settings

CATEGORIES = [
    "animals/mammals",
    "food/fruit",
    "shapes/arrows",
    "transportation/roadsigns",
    "recreation/music",
    "signs_and_symbols/flags",
]


def fetched(name: str) -> Path:
    """A benchmark image family, fetched once by benchmarks/fetch-<name>.sh (Debian packages)."""
    script = Path(__file__).with_name(f"fetch-{name}.sh")
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def openclipart() -> Path:
    return fetched("openclipart")


def environment() -> dict[str, str]:
    """Printed first by every benchmark: what the figures were measured with."""
    import platform

    import cv2
    import faiss
    import numpy
    import torch

    try:
        import onnxruntime

        ort = f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})"
    except ImportError:
        ort = "not installed"
    env = {
        "python": platform.python_version(),
        "venv": sys.prefix if sys.prefix != sys.base_prefix else "none (system Python)",
        "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "onnxruntime": ort,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,  # the duplicate check's keypoints and ECC
        "faiss": faiss.__version__,  # ... and its descriptor matching
    }
    print("# environment: " + "; ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    return env


def runtime_of(backbone: object) -> str:
    """The runtime that computes this backbone's features now: 'onnxruntime' or 'torch'."""
    return "onnxruntime" if getattr(backbone, "runtime", None) is not None else "torch"


def announce_runtime(backbone: object, *, want: str = "onnxruntime") -> str:
    """Print the runtime in use; a benchmark that reports ONNX Runtime figures stops when it is not active."""
    active = runtime_of(backbone)
    note = getattr(backbone, "runtime_note", "")
    print(f"# runtime in use: {active} ({note})", flush=True)
    if want == "onnxruntime" and active != "onnxruntime":
        raise SystemExit(
            f"ONNX Runtime is not active ({note}); no figure is printed as an ONNX Runtime figure. "
            "Install the requirements (pip install -r requirements.txt) or run with --runtime torch."
        )
    return active


def usable(files: list[Path], max_pixels: int = 20_000_000) -> list[Path]:
    """The files the app would take in, without the giant ones (a few openclipart PNGs are 150-600 MP)."""
    out = []
    for p in files:
        try:
            imaging.check_image(p, max_pixels=max_pixels)
        except imaging.ImageRejected:
            continue
        out.append(p)
    return out


def category_files(root: Path, category: str, max_pixels: int = 20_000_000) -> list[Path]:
    """PNG files of one category (not its sub-folders), without the giant ones, in a fixed order."""
    return usable(sorted((root / category).glob("*.png")), max_pixels)


def split_files(
    files: list[Path], n_train: int, n_test: int, seed: int = 0
) -> tuple[list[Path], list[Path], list[Path]]:
    files = list(files)
    random.Random(seed).shuffle(files)
    return files[:n_train], files[n_train : n_train + n_test], files[n_train + n_test :]


def build(workdir: Path | None = None, *, load: bool = True, **settings: object) -> tuple[Settings, Services]:
    """A real dataset and the services over it, in a temp folder; with `load`, the backbone is loaded and
    its runtime printed (a run that wants ONNX Runtime stops when it is not active)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="cvtools-bench-"))
    s = Settings(
        dataset_dir=workdir / "dataset",
        neuronet=str(settings.pop("neuronet", "efficientnet-lite0")),
        preload_model=False,
        **settings,
    )  # type: ignore[arg-type]
    sv = build_services(s)
    if load:
        announce_runtime(sv.models.backbone(), want="torch" if s.inference_runtime == "torch" else "onnxruntime")
    return s, sv


def train(sv: Services, mode: str = "head", **params: object) -> str:
    """Start a training run, wait for it, return the run id."""
    job, run = sv.training.start(mode, TrainParams(**params))  # type: ignore[arg-type]
    wait(sv.jobs, job.id)
    return run


def import_files(ds: Dataset, group: str, files: list[Path]) -> int:
    if group not in ds.group_names():
        ds.create_group(group)
    items = []
    for f in files:
        tmp = ds.new_tmp_path()
        tmp.write_bytes(f.read_bytes())
        items.append(Incoming(name=f.name, path=tmp))
    return len(ds.add_images(group, items).added)


def wait(jobs: JobRunner, job_id: str, timeout: float = 3600) -> dict:
    job = jobs.wait(job_id, timeout)
    if job.state != "done":
        raise RuntimeError(f"job {job.kind} ended {job.state}: {job.error}")
    return job.result  # type: ignore[no-any-return]


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    dataset: Path, env: dict[str, str] | None = None, run: str | None = None
) -> tuple[subprocess.Popen, str, float]:
    """`python run.py` in a subprocess; returns when it answers (and serves `run`, when given)."""
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "run.py"), "--dataset", str(dataset), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            status = httpx.get(url + "/api/status", timeout=1).json()
            if run is None or status["model"]["run"] == run:
                elapsed = time.perf_counter() - t0
                if run is not None:
                    runtime = status["model"]["runtime"]
                    print(f"# server runtime: {runtime} ({status['model']['runtime_note']})", flush=True)
                    wanted = (env or {}).get("CVTOOLS_INFERENCE_RUNTIME", "auto")
                    if wanted != "torch" and runtime != "onnxruntime":
                        proc.kill()
                        raise SystemExit("ONNX Runtime is not active in the server; no ONNX Runtime figure printed")
                return proc, url, elapsed
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError("the server did not start")


def cpu_note() -> str:
    return f"{os.cpu_count()} CPU cores"


def throughput(urls: list[str], clients: int, seconds: float) -> tuple[float, int]:
    """GET requests answered per second by `clients` threads, each cycling through the URLs (from its
    own offset); and the number of answers other than 200."""
    stop = time.perf_counter() + seconds
    counts, errors = [0] * clients, [0] * clients

    def loop(k: int) -> None:
        with httpx.Client(timeout=60) as c:
            for url in itertools.islice(itertools.cycle(urls), k, None):
                if time.perf_counter() >= stop:
                    return
                if c.get(url).status_code == 200:
                    counts[k] += 1
                else:
                    errors[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0), sum(errors)
