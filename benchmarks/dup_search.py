"""The duplicate search's projection on real features: every image of the openclipart and Wesnoth
families, both embedding layers searched through the projection that the app uses above
pairs.PROJECT_ABOVE images and by brute force (the baseline, same process), then one timed pass as
the app runs it.

    python -m benchmarks.dup_search

No threshold is chosen here: the search must find what brute force finds; the pass is timed cold.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cvtools.vision.anomalies import duplicates, pairs
from cvtools.vision.vectors import power_unit

from .common import build, environment
from .dup_world import World, add_file, embed, real_files, timed_pass


def fidelity(vectors: np.ndarray, max_distance: float, neighbours: int) -> dict[str, float]:
    """Pairs found as the app searches against brute force at full dimension."""
    u = power_unit(vectors)
    t0 = time.perf_counter()
    brute = pairs.embedding_pairs(u, max_distance, neighbours=neighbours, project_above=1 << 30)
    exact = {(i, j) for i, j, _ in brute}
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = pairs.embedding_pairs(u, max_distance, neighbours=neighbours, project_above=0)  # always projects
    got = {(i, j) for i, j, _ in found}
    t_app = time.perf_counter() - t0
    return {
        "brute_force_pairs": len(exact),
        "found": len(got & exact),
        "missing": len(exact - got),
        "other": len(got - exact),
        "brute_force_seconds": round(t_exact, 1),
        "search_seconds": round(t_app, 1),
    }


def main() -> None:
    environment()
    _, sv = build(Path(tempfile.mkdtemp(prefix="cvtools-dup-search-")))
    w = World(sv)
    for group, path in real_files():
        add_file(sv, group, path.name, path.read_bytes())
    embed(w)
    s = sv.settings
    out = {
        "images": len(w.refs),
        "the_app_projects_above": pairs.PROJECT_ABOVE,
        "centre_crop": fidelity(w.vecs, s.max_equal_distance, pairs.NEIGHBOURS),
        "drawn_part": fidelity(w.drawn, duplicates.DRAWN_PART_DISTANCE, duplicates.DRAWN_PART_NEIGHBOURS),
        "pass": timed_pass(s, w.refs, w.vecs, w.drawn, len(w.refs)),
    }
    print(json.dumps(out, indent=2), flush=True)


if __name__ == "__main__":
    main()
