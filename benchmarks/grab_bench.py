"""Grabber benchmark: 100 images from a local fake search engine whose image hosts answer after 200 ms.

Prints the wall time from job start to 100 accepted images and the images per second.

    python -m benchmarks.grab_bench [--count 100] [--latency 0.2] [--hosts 8]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from cvtools.dataset import Dataset
from cvtools.grabber.grab import Grabber
from cvtools.jobs import JobRunner
from cvtools.settings import Settings

from .common import environment


def photo(seed: int) -> bytes:
    """A 320x240 JPEG with real structure (so perceptual hashes differ between seeds)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((320, 240), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--hosts", type=int, default=8)
    args = ap.parse_args()
    images = {i: photo(i) for i in range(args.count + 20)}

    class ImageHost(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(args.latency)
            data = images[int(self.path.strip("/").split(".")[0])]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    hosts = [serve(ImageHost) for _ in range(args.hosts)]
    urls = [f"{hosts[i % len(hosts)][1]}/{i}.jpg" for i in images]

    class Bing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            first = int(parse_qs(urlsplit(self.path).query)["first"][0])
            page = urls[first : first + 35] or urls[-35:]
            body = "".join(f'<a class="iusc" m="{escape(json.dumps({"murl": u}))}">x</a>' for u in page).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    _, engine_url = serve(Bing)
    work = Path(tempfile.mkdtemp(prefix="cvtools-grab-"))
    s = Settings(
        dataset_dir=work / "dataset",
        preload_model=False,
        allow_private_urls=True,
        grab_bing_url=f"{engine_url}/images/async",
    )
    ds = Dataset(s.dataset_dir, max_image_pixels=s.max_image_pixels)
    ds.create_group("photos")
    jobs = JobRunner()
    grabber = Grabber(ds, s)
    t0 = time.perf_counter()
    job = jobs.submit("grab", lambda j: grabber.run("photos", "photos", args.count, "bing", j))
    jobs.wait(job.id, 600)
    wall = time.perf_counter() - t0
    print(
        f"# {args.hosts} image hosts, {args.latency * 1000:.0f} ms per image, {s.grab_workers} workers, "
        f"{s.grab_per_host} per host"
    )
    print(
        json.dumps(
            {
                "state": job.state,
                "added": job.result["added"] if job.result else None,
                "skipped": job.result["skipped"] if job.result else None,
                "wall_s": round(wall, 2),
                "images_per_s": round((job.result or {}).get("added", 0) / wall, 1),
            },
            indent=2,
        )
    )
    jobs.shutdown()


if __name__ == "__main__":
    main()
