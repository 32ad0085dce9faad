"""The documented shapes of the JSON answers (docs/API.md): every route declares one, so /openapi.json
describes what it sends and the fuzzing tests hold it to that. Fields beyond these are allowed: the
contract may grow, never shrink."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Progress(Open):
    done: int
    total: int
    message: str


class JobOut(Open):
    id: str
    kind: str
    state: str
    progress: Progress
    result: Any = None
    error: str | None = None


class JobsOut(Open):
    jobs: list[JobOut]


class JobStarted(Open):
    job: str


class DatasetInfo(Open):
    dir: str
    groups: int
    images: dict[str, int]


class StatusOut(Open):
    model: dict[str, Any]
    dataset: DatasetInfo
    jobs: list[JobOut]


class GroupOut(Open):
    name: str
    parent: str | None
    counts: dict[str, int]


class GroupsOut(Open):
    groups: list[GroupOut]


class NameOut(Open):
    name: str


class DeletedGroupOut(Open):
    deleted: str
    images: int


class LabelModeOut(Open):
    label_mode: str
    multi_members: int


class ImageOut(Open):
    id: str
    group: str
    status: str
    path: str
    url: str
    thumb: str
    sha256: str
    source: str | None
    width: int
    height: int


class ImagesPage(Open):
    total: int
    images: list[ImageOut]


class Skip(Open):
    name: str
    reason: str


class UploadOut(Open):
    added: list[ImageOut]
    skipped: list[Skip]


class UpdatedOut(Open):
    updated: int


class MovedOut(Open):
    moved: int


class UndoneOut(Open):
    undone: int
    group: str | None = None


class AddedOut(Open):
    added: int


class ProvidersOut(Open):
    providers: list[str]
    default: str


class TrainParamsOut(Open):
    mode: str
    params: dict[str, Any]


class TrainStarted(Open):
    job: str
    run: str


class RunOut(Open):
    id: str
    state: str
    mode: str
    backbone: str
    classes: list[str]
    epochs: list[dict[str, Any]]
    best: dict[str, Any] | None
    confusion: list[list[int]] | None


class RunsOut(Open):
    runs: list[RunOut]


class PromoteOut(Open):
    production: str


class ModelOut(Open):
    run: str
    accuracy: float
    created: str


class ModelsOut(Open):
    production: str | None
    models: list[ModelOut]


class AnalyzeOut(Open):
    classification: list[list[Any]]
    similar: list[dict[str, Any]]


class ClassifyOut(Open):
    results: list[dict[str, Any]]


class IndexOut(Open):
    exists: bool
    images: int
    space: str


class AnomaliesOut(Open):
    items: list[dict[str, Any]] | None = None  # type=errors
    pairs: list[dict[str, Any]] | None = None  # type=duplicates
