"""API fuzzing: schemathesis generates requests for every operation in /openapi.json (valid and
invalid ones) against a live server with a token and a trained model. No 5xx, and every response
matches the schema: its status code, content type and body are the documented ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cvtools.settings import Settings

from ..conftest import LiveServer, fill_classes, run_training

TOKEN = "fuzz-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 100 if os.environ.get("CVTOOLS_SLOW") == "1" else 12  # per operation
# Not applicable: names, paths and ids are checked by meaning (a group that does not exist, a name
# with a slash), which a schema cannot say, so schema-valid requests are often rightly refused; and a
# group name may contain slashes, so `PATCH /api/groups/a/grab` is a rename of group "a/grab", not an
# undeclared method on the grab route.
EXCLUDED = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.unsupported_method]


@pytest.fixture(scope="module")
def fuzz_server(tiny_convnext: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("fuzz")
    public = root / "public"
    public.mkdir()
    s = Settings(
        dataset_dir=root / "dataset",
        neuronet=str(tiny_convnext),
        preload_model=False,
        auth_token=TOKEN,
        public_dirs=[public],
        # the grabber's engines point at a closed local port: no request leaves the machine
        grab_google_url="http://127.0.0.1:9/",
        grab_bing_url="http://127.0.0.1:9/",
        grab_duckduckgo_url="http://127.0.0.1:9/",
        grab_openverse_url="http://127.0.0.1:9/",
    )
    with LiveServer(s) as server:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as c:
            fill_classes(c, per_class=6)
            run = run_training(c, "head", epochs=3)["id"]
            assert c.post("/api/models/promote", json={"run": run, "build_index": True}).status_code == 200
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_server: LiveServer):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json", headers=HEADERS)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_fuzz(case) -> None:  # type: ignore[no-untyped-def]
    if case.path == "/api/events":
        return  # the event stream never ends by design; its auth is tested in test_security
    case.call_and_validate(headers=HEADERS, timeout=60, excluded_checks=EXCLUDED)
