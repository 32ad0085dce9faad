"""The benchmark protocol: each family's categories split once into dev and report halves, disjoint,
covering every category, the same on every run (benchmarks/README.md)."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

from benchmarks.families import _halves, unit_of


def test_halves_are_disjoint_complete_and_fixed() -> None:
    names = [f"cat{i}" for i in range(23)]
    dev, report = _halves(names, "openclipart")
    assert not set(dev) & set(report) and sorted(dev + report) == sorted(names)
    assert abs(len(dev) - len(report)) <= 1
    assert _halves(list(reversed(names)), "openclipart") == (dev, report)  # order of discovery: no matter
    assert _halves(names, "wesnoth") != (dev, report)  # each family has its own split
    assert _halves(names, "glyphs") not in ((dev, report), _halves(names, "wesnoth"))


def test_every_family_has_a_fetch_script() -> None:
    from benchmarks.families import FAMILIES

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    assert len(FAMILIES) >= 3
    for name in FAMILIES:
        assert (root / f"fetch-{name}.sh").is_file(), name


def test_wesnoth_frames_belong_to_their_unit() -> None:
    root = Path("/data/wesnoth")
    frames = ["drakes/arbiter.png", "drakes/arbiter-blade-s-4.png", "drakes/arbiter+female.png"]
    assert {unit_of(root / f, root) for f in frames} == {"drakes/arbiter"}
    assert unit_of(root / "drakes/burner.png", root) != "drakes/arbiter"


def test_feature_lever_baseline_is_the_apps_feature() -> None:
    """feature_bench's `avg` is the app's Lite0 embedding (the baseline its levers are compared with);
    GeM (p = 3) is at least the average of the same map; the stages' parts weigh the same."""
    import torch

    from benchmarks.feature_bench import STAGE_BLOCKS, Pooled
    from cvtools.vision.backbone import load_efficientnet_lite0

    bb = load_efficientnet_lite0()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        avg, gem, stages = Pooled(bb.model)(x)
        app = bb.features_torch(x)
    assert torch.allclose(avg, app, atol=1e-5)
    assert bool((gem >= avg - 1e-5).all()) and not torch.allclose(gem, avg)
    dims = [bb.model._blocks[i]._block_args.output_filters for i in STAGE_BLOCKS] + [avg.shape[1]]
    assert stages.shape[1] == sum(dims)
    norms = [part.norm(dim=1) / d**0.5 for part in stages.split(dims, dim=1) for d in [part.shape[1]]]
    assert all(torch.allclose(n, torch.ones(2), atol=1e-4) for n in norms)


SCRIPTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_imports_what_the_app_has(script: str) -> None:
    """A benchmark that names a function the app no longer has fails here, not after minutes of work
    (two did after the redesign); and every module alias it uses names something that exists."""
    module = importlib.import_module(f"benchmarks.{script}")
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[arg-type]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            alias = getattr(module, node.value.id, None)
            if isinstance(alias, types.ModuleType):
                assert hasattr(alias, node.attr), f"{script}.py:{node.lineno} {node.value.id}.{node.attr}"


def test_the_stretch_limit_is_chosen_on_a_family_that_chose_nothing_else() -> None:
    """dup_stretch chooses on glyphs and reports on the two families that dup_bench chooses on; its rule:
    best recall at precision >= 0.97, else best precision, the larger limit on a tie."""
    from benchmarks import dup_bench, dup_stretch

    assert dup_stretch.DEV not in dup_stretch.REPORT
    assert {dup_bench.DEV, dup_bench.REPORT} == set(dup_stretch.REPORT)

    def run(values: dict[float, tuple[float, float]]) -> dict[float, dict[str, float]]:
        return {
            k: {"recall": values.get(k, (0.5, 0.5))[0], "precision": values.get(k, (0.5, 0.5))[1]}
            for k in dup_stretch.LIMITS
        }

    loose, tight = dup_stretch.LIMITS[-1], dup_stretch.LIMITS[0]
    assert dup_stretch.choose([run({loose: (0.9, 0.98), tight: (0.8, 0.99)})]) == loose
    assert dup_stretch.choose([run({loose: (0.9, 0.90), tight: (0.8, 0.96)})]) == tight
    assert dup_stretch.choose([run({})]) == loose  # a tie everywhere: the largest


def test_measured_scale_ranks_each_image_against_a_calibration_that_never_saw_it() -> None:
    """heldout_scale (tried on dev, not shipped): an image unlike every group gets a small p-value, the
    rest spread over (0, 1]; groups too small for folds within folds give no measurement."""
    import numpy as np

    from benchmarks.heldout_scale import SCALE_RANGE, held_out_p_values, scale_from
    from cvtools.vision.head import HeadParams

    rng = np.random.default_rng(0)
    centers = np.pad(rng.normal(size=(3, 12)) * 4, ((0, 0), (0, 4)))
    x = np.concatenate([c + np.pad(rng.normal(size=(40, 12)), ((0, 0), (0, 4))) for c in centers])
    strays = [0, 40, 80]  # one in each group, each along a dimension no other image uses
    x[strays] = np.eye(16)[13:] * 25
    x = x.astype(np.float32)
    y = np.repeat(np.arange(3), 40)
    shas = [f"{i:04d}" for i in range(len(y))]
    params = HeadParams(epochs=5)
    p = held_out_p_values([x, x], y, shas, ["a", "b", "c"], params)
    assert p is not None and p.shape == (len(y),) and float(p.min()) >= 0 and float(p.max()) <= 1
    others = np.delete(p, strays)
    assert float(p[strays].max()) < 0.5 * float(np.median(others)), (p[strays], np.median(others))
    assert held_out_p_values([x[:84], x[:84]], y[:84], shas[:84], ["a", "b", "c"], params) is None  # c: 4 images
    assert scale_from(np.full(50, 1e-4), 0.05) == SCALE_RANGE[0] and scale_from(np.ones(50), 0.05) == SCALE_RANGE[1]


def test_head_defaults_rule_needs_a_lead_on_dev_without_a_family_falling() -> None:
    """head_bench's rule: >= 0.5 points over the shipped default on dev's mean over families, no family
    more than 1 point below it; else the shipped default stays."""
    from benchmarks import head_bench

    grid = head_bench.settings()
    assert head_bench.BASELINE in grid
    other = next(n for n in grid if n != head_bench.BASELINE)

    def means(lead: float, worst: float) -> dict[str, dict[str, float]]:
        out = {}
        for k, fam in enumerate(("a", "b", "c")):
            row = {f"acc | {n}": 0.8 for n in grid}
            row[f"acc | {other}"] = 0.8 + (worst if k == 0 else (3 * lead - worst) / 2)
            out[fam] = row
        return out

    assert head_bench.choose(means(0.006, 0.006)) == other
    assert head_bench.choose(means(0.004, 0.004)) == head_bench.BASELINE  # too small a lead
    assert head_bench.choose(means(0.01, -0.012)) == head_bench.BASELINE  # one family falls too far
