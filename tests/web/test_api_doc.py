"""docs/API.md and the running app describe the same endpoints; the project stands on its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cvtools.settings import PROJECT_ROOT, Settings
from cvtools.web import create_app

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)")


def documented() -> set[tuple[str, str]]:
    return set(ENDPOINT.findall((PROJECT_ROOT / "docs" / "API.md").read_text()))


def served(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings(dataset_dir=tmp_path / "d", preload_model=False))
    return {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops if m.upper() in METHODS}


def test_api_doc_lists_exactly_the_served_endpoints(tmp_path: Path) -> None:
    doc, app = documented(), served(tmp_path)
    assert not app - doc, f"served but not in docs/API.md: {sorted(app - doc)}"
    assert not doc - app, f"in docs/API.md but not served: {sorted(doc - app)}"


def test_the_clone_is_the_whole_product() -> None:
    """Nothing the project ships reads or links a path outside the repository (a sibling folder and the like)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    outside = re.compile(r"\.\./shared|PROJECT_ROOT\.parent|parent\s*/\s*\"shared\"")
    hits = []
    for name in files:
        path = PROJECT_ROOT / name
        if name.startswith(".ci/") or path.suffix not in {".py", ".md", ".sh", ".html", ".js", ".txt", ".toml"}:
            continue
        if path.is_file() and outside.search(path.read_text(errors="replace")):
            hits.append(name)
    assert not hits, f"these files reach outside the repository: {hits}"
