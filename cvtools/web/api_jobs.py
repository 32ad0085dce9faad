"""Jobs and the server-sent event stream."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .deps import ERRORS, ServicesDep
from .responses import JobOut, JobsOut

router = APIRouter(tags=["jobs"])


@router.get("/api/jobs", response_model=JobsOut)
def list_jobs(sv: ServicesDep) -> dict[str, Any]:
    return {"jobs": [j.to_json() for j in sv.jobs.recent(50)]}


@router.get("/api/jobs/{job_id}", responses=ERRORS, response_model=JobOut)
def get_job(job_id: str, sv: ServicesDep) -> dict[str, Any]:
    return sv.jobs.get(job_id).to_json()


@router.post("/api/jobs/{job_id}/cancel", responses=ERRORS, response_model=JobOut)
def cancel_job(job_id: str, sv: ServicesDep) -> dict[str, Any]:
    return sv.jobs.cancel(job_id).to_json()


@router.get("/api/events", response_class=StreamingResponse)
async def events(request: Request) -> StreamingResponse:
    """text/event-stream: one event per change; the names are schemas.Event."""
    hub = request.app.state.events
    return StreamingResponse(
        hub.stream(request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
