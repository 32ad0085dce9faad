"""`/cv` on Ray Serve: the app's contract (GET `/cv?<path or URL>[:n]`, POST `/cv?n=` with an image body,
the same parsing, path/URL policy, token and errors) answered by N replicas of a bundle, whose requests
meet in dynamic batches. Running `serve` again against the same Ray changes the replica count in place."""

# No `from __future__ import annotations`: the deployment class is shipped to replicas by value, and
# FastAPI there must see its parameter types (Request, Query) as objects, not as names.

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from .. import netfetch
from ..cvquery import parse_cv_query
from ..errors import TooLarge
from ..settings import Settings, is_loopback
from ..web.auth import LOOPBACK_NAMES, AuthMiddleware, Sessions
from ..web.cv_body import read_cv_body
from ..web.handlers import install_json_errors
from . import extra
from .model import Bundle

APP_NAME = "cvtools"


@dataclass(frozen=True)
class ServeOptions:
    public_dirs: tuple[str, ...]
    base: str
    policy: netfetch.UrlPolicy = field(default_factory=netfetch.UrlPolicy)
    token: str = ""
    hosts: tuple[str, ...] | None = tuple(LOOPBACK_NAMES)  # None: bound to a public address
    cv_unknown: bool = False
    max_batch_size: int = 16
    batch_wait_s: float = 0.005
    threads: int = 1  # ONNX Runtime threads per replica

    @classmethod
    def from_settings(cls, s: Settings, host: str, **kw: Any) -> "ServeOptions":
        """The app's own settings (config.py, CVTOOLS_*): public_dirs, URL policy, token, cv_unknown."""
        if not is_loopback(host) and not s.auth_token:
            raise ValueError(f"auth_token must be set when serving on {host!r} (not this computer only)")
        return cls(
            public_dirs=tuple(str(d) for d in s.public_dirs),
            base=str(s.dataset_dir),
            policy=netfetch.UrlPolicy(allow_private=s.allow_private_urls, max_bytes=s.max_upload_bytes),
            token=s.auth_token,
            hosts=tuple(LOOPBACK_NAMES) if is_loopback(host) else None,
            cv_unknown=s.cv_unknown,
            **kw,
        )


def web_app(opts: ServeOptions) -> FastAPI:
    app = FastAPI(title="CV Tools bundle", docs_url=None, redoc_url=None, openapi_url=None)
    install_json_errors(app)
    app.add_middleware(
        AuthMiddleware, token=opts.token, sessions=Sessions(), hosts=set(opts.hosts) if opts.hosts else None
    )
    return app


def application(files: dict[str, bytes], opts: ServeOptions, replicas: int) -> Any:
    """The Ray Serve application (a bound deployment) for a bundle's files."""
    serve = extra.load("ray.serve")
    app = web_app(opts)

    @serve.deployment(name="cv", num_replicas=replicas, ray_actor_options={"num_cpus": opts.threads})
    @serve.ingress(app)
    class CV:
        def __init__(self, files: dict[str, bytes], opts: ServeOptions) -> None:
            self.bundle = Bundle.from_files(files, threads=opts.threads)
            self.opts = opts

        @serve.batch(max_batch_size=opts.max_batch_size, batch_wait_timeout_s=opts.batch_wait_s)
        async def forward(self, arrays: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
            probs, feats = await asyncio.to_thread(self.bundle.run, np.stack(arrays))
            return list(zip(probs, feats, strict=True))

        async def answer(self, data: bytes, n: int | None) -> JSONResponse:
            if len(data) > self.opts.policy.max_bytes:
                raise TooLarge(f"the image is larger than {self.opts.policy.max_bytes // (1024 * 1024)} MB")
            arr = await asyncio.to_thread(lambda: self.bundle.array(self.bundle.decode(data)))
            probs, feats = await self.forward(arr)
            return JSONResponse(self.bundle.cv_answer(probs, feats, n, cv_unknown=self.opts.cv_unknown))

        @app.get("/cv")
        async def cv_get(self, request: Request) -> JSONResponse:
            target, n = parse_cv_query(request.scope.get("query_string", b"").decode("latin-1"))
            o = self.opts
            source = netfetch.locate(
                target, public_dirs=[Path(d) for d in o.public_dirs], base=Path(o.base), policy=o.policy
            )
            return await self.answer(await asyncio.to_thread(source.read, o.policy), n)

        @app.post("/cv")
        async def cv_post(
            self, request: Request, n: Annotated[int | None, Query(ge=0, le=100000)] = None
        ) -> JSONResponse:
            return await self.answer(await read_cv_body(request), n)

        @app.get("/healthz")
        async def health(self) -> dict[str, Any]:
            return {"run": self.bundle.meta["run"], "classes": self.bundle.classes}

    return CV.bind(files, opts)


def deploy(files: dict[str, bytes], opts: ServeOptions, *, replicas: int, host: str, port: int) -> None:
    """Start (or update in place) the application; Ray must be initialised."""
    serve = extra.load("ray.serve")
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(files, opts, replicas), name=APP_NAME, route_prefix="/", blocking=False)


def replicas_running() -> int:
    app = extra.load("ray.serve").status().applications.get(APP_NAME)
    return 0 if app is None else sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())


def wait_forever() -> None:
    """Until Ctrl-C or SIGTERM; then the application and the local Ray stop."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        extra.load("ray.serve").shutdown()
        extra.load("ray").shutdown()
