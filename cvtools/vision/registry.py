"""Model versions under .cvtools/models/<run>/ (run.json, weights) and the production pointer."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from ..errors import NotFound
from ..imaging import write_atomic
from ..schemas import RunRecord, RunState


class Registry:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.pointer = folder / "production.json"

    def new_run_id(self) -> str:
        return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)

    def run_dir(self, run: str) -> Path:
        if not run or "/" in run or "\\" in run or run.startswith("."):
            raise NotFound(f"run {run!r} does not exist")
        return self.folder / run

    def write(self, record: RunRecord) -> None:
        write_atomic(self.run_dir(record.id) / "run.json", json.dumps(record.to_json(), indent=1).encode())

    def get(self, run: str) -> RunRecord:
        path = self.run_dir(run) / "run.json"
        try:
            return RunRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise NotFound(f"run {run!r} does not exist") from None
        except (OSError, ValueError, TypeError) as exc:
            raise NotFound(f"run {run!r} is unreadable ({exc})") from None

    def runs(self) -> list[RunRecord]:
        out = []
        for d in sorted(self.folder.iterdir(), reverse=True):
            if d.is_dir() and (d / "run.json").is_file():
                try:
                    out.append(RunRecord.from_json(json.loads((d / "run.json").read_text())))
                except (OSError, ValueError, TypeError):
                    continue
        return out

    def mark_interrupted(self) -> list[str]:
        """Runs a previous process left queued or running (it was stopped or killed) are over."""
        marked = []
        for record in self.runs():
            if record.state in (RunState.QUEUED, RunState.RUNNING):
                record.state, record.error = RunState.INTERRUPTED, "the server stopped during this run; start it again"
                self.write(record)
                marked.append(record.id)
        return marked

    def production(self) -> str | None:
        try:
            return json.loads(self.pointer.read_text()).get("run")  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def set_production(self, run: str) -> None:
        write_atomic(self.pointer, json.dumps({"run": run, "since": time.time()}).encode())
