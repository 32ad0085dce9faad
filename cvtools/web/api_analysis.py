"""Image analysis: one image with its similar dataset images, many images at once, the similarity
index, and the anomaly lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..errors import BadInput, NotFound, TooLarge
from ..schemas import AnomalyKind, AnomalyMethod
from . import presenters
from .deps import WITH_MODEL, ServicesDep, get_services
from .responses import AnalyzeOut, AnomaliesOut, ClassifyOut, IndexOut, JobStarted

router = APIRouter(tags=["analysis"])
MAX_BATCH = 256
CLASSIFY_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"paths": {"type": "array", "items": {"type": "string"}}}}
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            },
        }
    }
}


class ClassifyRequest(BaseModel):
    paths: list[str]


@router.post("/api/analyze", responses=WITH_MODEL, response_model=AnalyzeOut)
def analyze(
    sv: ServicesDep,
    file: Annotated[UploadFile | None, File()] = None,
    url: Annotated[str | None, Form(description="an image URL or local path instead of a file")] = None,
    similar: Annotated[int, Form(ge=0, le=1000)] = 20,
    group: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    if file is not None:
        sv.models.require_production()
        data = file.file.read(sv.settings.max_upload_bytes + 1)
    elif url:
        source = sv.classifier.locate(url.strip())
        sv.models.require_production()
        data = source.read(sv.classifier.policy)
    else:
        raise BadInput("send an image file (field 'file') or an image URL (field 'url')")
    if group:
        group = sv.dataset.require_group(group)
    ranked, vector, verdict = sv.classifier.analyze_full(sv.classifier.decode(data))
    hits = sv.search.similar(vector, similar, group) if similar else []
    out = []
    for hit in hits or []:
        try:
            out.append(presenters.similar(hit, sv.dataset.get_image(hit[0])))
        except NotFound:  # removed since the index was updated
            continue
    keys = ("unknown", "reason", "fallback", "nearest", "score")
    return {
        "classification": [[g, p] for g, p in ranked],
        "similar": out,
        "index": hits is not None,
        **{k: verdict[k] for k in keys},
        "labels": verdict.get("labels"),
    }


@router.post("/api/classify", responses=WITH_MODEL, response_model=ClassifyOut, openapi_extra=CLASSIFY_BODY)
async def classify(request: Request) -> dict[str, Any]:
    """Many images at once (multipart `files`, or JSON `{"paths": [local paths or URLs]}`): for each,
    the ranked groups, `unknown` with its reason, the `fallback` parent, and the nearest dataset image."""
    sv = get_services(request)
    sv.models.require_production()
    items: list[tuple[str, bytes | str]] = []
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_BATCH)
        for f in form.getlist("files"):
            if not isinstance(f, str):
                items.append((f.filename or "image", await f.read()))
    else:
        try:
            body = ClassifyRequest.model_validate_json(await request.body())
        except ValueError:
            raise BadInput('send multipart "files", or JSON {"paths": ["<path or URL>", ...]}') from None
        items = [(p, p) for p in body.paths]
    if not items:
        raise BadInput("no images given")
    if len(items) > MAX_BATCH:
        raise TooLarge(f"at most {MAX_BATCH} images per request")
    return {"results": await run_in_threadpool(sv.classifier.classify_many, items)}


@router.get("/api/index", response_model=IndexOut)
def index_status(sv: ServicesDep) -> dict[str, Any]:
    return sv.search.status()


@router.post("/api/index", status_code=202, responses=WITH_MODEL, response_model=JobStarted)
def build_index(sv: ServicesDep) -> JSONResponse:
    return JSONResponse({"job": sv.search.start_job(full=True).id}, status_code=202)


@router.get("/api/anomalies", responses=WITH_MODEL, response_model=AnomaliesOut, response_model_exclude_unset=True)
def anomalies(
    sv: ServicesDep,
    type: Annotated[AnomalyKind, Query(description="errors or duplicates")] = AnomalyKind.ERRORS,
    method: Annotated[AnomalyMethod | None, Query(description="cross_validation or production")] = None,
) -> dict[str, Any]:
    """The latest anomaly list; computed now when the dataset or the main model changed since."""
    return presenters.anomalies(sv.anomalies.get(type, method))


@router.post("/api/anomalies", status_code=202, responses=WITH_MODEL, response_model=JobStarted)
def calculate_anomalies(
    sv: ServicesDep,
    type: Annotated[AnomalyKind, Query()] = AnomalyKind.ERRORS,
    method: Annotated[AnomalyMethod | None, Query()] = None,
) -> JSONResponse:
    """Calculate as a background job with progress; then GET returns the list."""
    return JSONResponse({"job": sv.anomalies.start_job(type, method).id}, status_code=202)
