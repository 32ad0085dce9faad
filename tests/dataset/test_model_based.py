"""Model-based tests: random sequences of dataset operations, checked after every step against a
plain in-memory model of groups and image statuses, and against the files on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cvtools.dataset import STATE, Dataset, Incoming
from cvtools.errors import BadInput, Conflict, NotFound

from ..helpers import image_bytes

LEAVES = st.sampled_from(["a", "b", "c", "Cats", "été"])
STATUSES = st.sampled_from(["group", "new", "deleted"])


class DatasetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="cvtools-model-")) / "ds"
        self.ds = Dataset(self.root, max_image_pixels=1_000_000)
        self.groups: set[str] = set()
        self.images: dict[str, tuple[str, str]] = {}  # id -> (group, status)
        self.seed = 0

    def teardown(self) -> None:
        self.ds.close()

    # ---- operations ------------------------------------------------------------------------
    @rule(leaf=LEAVES, parent_pick=st.integers(0, 10), nested=st.booleans())
    def create_group(self, leaf: str, parent_pick: int, nested: bool) -> None:
        parents = sorted(self.groups)
        parent = parents[parent_pick % len(parents)] if nested and parents else None
        full = f"{parent}/{leaf}" if parent else leaf
        try:
            self.ds.create_group(leaf, parent)
        except Conflict:
            assert full in self.groups or any(g.lower() == full.lower() for g in self.groups)
            return
        assert full not in self.groups
        self.groups.add(full)

    @precondition(lambda self: self.groups)
    @rule(pick=st.integers(0, 100), leaf=LEAVES)
    def rename_group(self, pick: int, leaf: str) -> None:
        name = sorted(self.groups)[pick % len(self.groups)]
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        new = f"{parent}/{leaf}" if parent else leaf
        try:
            got = self.ds.rename_group(name, leaf)
        except Conflict:
            assert new in self.groups or (self.root / new).exists()
            return
        assert got == new

        def moved(g: str) -> str:
            return new + g[len(name) :] if g == name or g.startswith(name + "/") else g

        self.groups = {moved(g) for g in self.groups}
        self.images = {i: (moved(g), s) for i, (g, s) in self.images.items()}

    @precondition(lambda self: self.groups)
    @rule(pick=st.integers(0, 100))
    def delete_group(self, pick: int) -> None:
        name = sorted(self.groups)[pick % len(self.groups)]
        gone = {g for g in self.groups if g == name or g.startswith(name + "/")}
        self.ds.delete_group(name)
        self.groups -= gone
        self.images = {i: (g, "deleted" if g in gone else s) for i, (g, s) in self.images.items()}

    @precondition(lambda self: self.groups)
    @rule(pick=st.integers(0, 100), n=st.integers(1, 3), status=STATUSES)
    def add_images(self, pick: int, n: int, status: str) -> None:
        group = sorted(self.groups)[pick % len(self.groups)]
        items = []
        for _ in range(n):
            self.seed += 1
            tmp = self.ds.new_tmp_path()
            tmp.write_bytes(image_bytes(self.seed, size=(12, 10)))
            items.append(Incoming(f"img{self.seed % 3}.png", tmp))  # repeated names get unique ones
        added = self.ds.add_images(group, items, status=status).added
        assert len(added) == n
        for a in added:
            self.images[a.id] = (group, status)

    @precondition(lambda self: self.images)
    @rule(picks=st.lists(st.integers(0, 1000), min_size=1, max_size=4), status=STATUSES)
    def set_status(self, picks: list[int], status: str) -> None:
        ids = sorted({sorted(self.images)[p % len(self.images)] for p in picks})
        self.ds.set_status(ids, status)
        for i in ids:
            g, _ = self.images[i]
            self.images[i] = (g, status)
            if status == "group":
                self.groups.add(g)  # a deleted group's image brought back brings the group back

    @precondition(lambda self: self.images and self.groups)
    @rule(picks=st.lists(st.integers(0, 1000), min_size=1, max_size=4), pick=st.integers(0, 100))
    def move(self, picks: list[int], pick: int) -> None:
        ids = sorted({sorted(self.images)[p % len(self.images)] for p in picks})
        group = sorted(self.groups)[pick % len(self.groups)]
        self.ds.move(ids, group)
        for i in ids:
            self.images[i] = (group, "group")

    @rule(name=st.sampled_from(["..", "a/b", ".x", "", "a\x00"]))
    def bad_name_changes_nothing(self, name: str) -> None:
        before = self._state()
        try:
            self.ds.create_group(name)
        except (BadInput, Conflict, NotFound):
            pass
        else:
            raise AssertionError(f"{name!r} was accepted")
        assert self._state() == before

    # ---- checks ----------------------------------------------------------------------------
    def _state(self) -> tuple[set[str], dict[str, tuple[str, str]]]:
        rows = self.ds.catalog.all_images()
        return set(self.ds.group_names()), {r["id"]: (r["grp"], r["status"]) for r in rows}

    @invariant()
    def catalog_matches_model(self) -> None:
        groups, images = self._state()
        assert groups == self.groups
        assert images == self.images

    @invariant()
    def files_match_catalog(self) -> None:
        rows = self.ds.catalog.all_images()
        for row in rows:
            assert self.ds.layout.abs_path(row).is_file(), dict(row)
        in_groups = {self.ds.layout.rel_path(r) for r in rows if r["status"] == "group"}
        on_disk = set()
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != STATE]
            on_disk |= {(Path(dirpath) / f).relative_to(self.root).as_posix() for f in filenames}
        assert on_disk == in_groups
        for g in self.groups:
            assert (self.root / g).is_dir(), g


TestDatasetModel = DatasetMachine.TestCase
TestDatasetModel.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
