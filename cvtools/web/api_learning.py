"""Learning endpoints of docs/API.md: parameters, training runs, model versions and promotion."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from ..errors import BadInput, NotFound
from ..schemas import TrainMode, TrainParams
from ..vision.bundle_export import bundle_zip
from ..vision.export import export_onnx
from . import presenters
from .deps import ERRORS, ServicesDep
from .responses import ModelOut, ModelsOut, PromoteOut, RunOut, RunsOut, TrainParamsOut, TrainStarted

router = APIRouter(tags=["learning"])


class TrainRequest(BaseModel):
    mode: TrainMode | None = None
    params: TrainParams = Field(default_factory=TrainParams)


class PromoteRequest(BaseModel):
    run: str
    build_index: bool = True


@router.get("/api/train/params", response_model=TrainParamsOut)
def train_params(sv: ServicesDep) -> dict[str, Any]:
    return sv.training.params()


@router.post("/api/train", status_code=202, responses=ERRORS, response_model=TrainStarted)
def start_training(body: TrainRequest, sv: ServicesDep) -> JSONResponse:
    """409 while another run is in progress; 400 when fewer than 2 groups have enough images; 422 for a
    parameter out of its range (named)."""
    job, run = sv.training.start(body.mode, body.params)
    return JSONResponse({"job": job.id, "run": run}, status_code=202)


@router.get("/api/train/runs", response_model=RunsOut)
def list_runs(sv: ServicesDep) -> dict[str, Any]:
    return {"runs": [r.to_json(predictions=False) for r in sv.models.registry.runs()]}


@router.get("/api/train/runs/{run}", responses=ERRORS, response_model=RunOut)
def get_run(run: str, sv: ServicesDep) -> dict[str, Any]:
    out = sv.models.registry.get(run).to_json()
    out["predictions"] = presenters.predictions(out.get("predictions") or [])
    return out


@router.post("/api/models/promote", responses=ERRORS, response_model=PromoteOut)
def promote(body: PromoteRequest, sv: ServicesDep) -> dict[str, Any]:
    sv.models.promote(body.run)
    out: dict[str, Any] = {"production": body.run}
    if body.build_index:
        out["index_job"] = sv.search.start_job(full=True).id
    return out


@router.get("/api/models", response_model=ModelsOut)
def models(sv: ServicesDep) -> dict[str, Any]:
    return sv.models.versions()


@router.get("/api/models/{run}/export", responses=ERRORS, response_class=FileResponse)
def export_model(run: str, sv: ServicesDep, format: str = "onnx") -> FileResponse:
    """`onnx`: one ONNX file, normalised batch -> probabilities, classes in its metadata. `bundle`: a zip
    that answers as /cv does without the app (python -m cvtools serve / classify --bundle)."""
    if format == "bundle":
        path = bundle_zip(sv.models, run, max_pixels=sv.settings.max_image_pixels)
        return FileResponse(path, media_type="application/zip", filename=f"cvtools-{run}-bundle.zip")
    if format != "onnx":
        raise BadInput("format must be onnx or bundle")
    return FileResponse(
        export_onnx(sv.models, run), media_type="application/octet-stream", filename=f"cvtools-{run}.onnx"
    )


@router.get("/api/models/{run}", responses=ERRORS, response_model=ModelOut)
def model(run: str, sv: ServicesDep) -> dict[str, Any]:
    for m in sv.models.versions()["models"]:
        if m["run"] == run:
            return m  # type: ignore[no-any-return]
    raise NotFound(f"model {run!r} does not exist")
