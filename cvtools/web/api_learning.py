"""Learning endpoints of API.md: parameters, training runs, model versions and promotion."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from ..errors import BadInput, NotFound
from .api_dataset import ERRORS
from .app import AppContext, get_ctx

router = APIRouter(tags=["learning"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


class TrainRequest(BaseModel):
    mode: str = "auto"
    params: dict[str, Any] = {}


class PromoteRequest(BaseModel):
    run: str
    build_index: bool = True


@router.get("/api/train/params")
def train_params(ctx: Ctx) -> dict[str, Any]:
    return ctx.engine.train_params()


@router.post("/api/train", status_code=202, responses=ERRORS)
def start_training(body: TrainRequest, ctx: Ctx) -> JSONResponse:
    job, run = ctx.engine.start_training(body.mode, body.params)
    return JSONResponse({"job": job.id, "run": run}, status_code=202)


@router.get("/api/train/runs")
def list_runs(ctx: Ctx) -> dict[str, Any]:
    return {"runs": [{k: v for k, v in r.items() if k != "predictions"} for r in ctx.engine.registry.runs()]}


@router.get("/api/train/runs/{run}", responses=ERRORS)
def get_run(run: str, ctx: Ctx) -> dict[str, Any]:
    return ctx.engine.registry.get(run)


@router.post("/api/models/promote", responses=ERRORS)
def promote(body: PromoteRequest, ctx: Ctx) -> dict[str, Any]:
    ctx.engine.promote(body.run)
    out: dict[str, Any] = {"production": body.run}
    if body.build_index:
        out["index_job"] = ctx.engine.start_index_job(full=True).id
    return out


@router.get("/api/models")
def models(ctx: Ctx) -> dict[str, Any]:
    return ctx.engine.models()


@router.get("/api/models/{run}/export", responses=ERRORS, response_class=FileResponse)
def export_model(run: str, ctx: Ctx, format: str = "onnx") -> FileResponse:
    """The model as one ONNX file: normalised 224-px batch -> probabilities; classes in its metadata."""
    if format != "onnx":
        raise BadInput("format must be onnx")
    path = ctx.engine.export_onnx(run)
    return FileResponse(path, media_type="application/octet-stream", filename=f"cvtools-{run}.onnx")


@router.get("/api/models/{run}", responses=ERRORS)
def model(run: str, ctx: Ctx) -> dict[str, Any]:
    for m in ctx.engine.models()["models"]:
        if m["run"] == run:
            return m
    raise NotFound(f"model {run!r} does not exist")
