"""Ray, the optional extra (requirements-ray.txt; requirements-test.txt includes it, so CI runs the Ray
tests). The app itself never needs it: only `serve` and `classify --ray` load it, here, by name, and a
machine without it gets one clear sentence instead of an ImportError. (The shared requirements check
knows requirements.txt and requirements-test.txt only; Ray is declared in requirements-ray.txt.)"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL = "pip install -r requirements-ray.txt"


class MissingExtra(RuntimeError):
    pass


def load(name: str) -> ModuleType:
    """`ray`, `ray.serve` or `ray.data`, or MissingExtra saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingExtra(f"Ray is not installed: {INSTALL}") from None


def available() -> bool:
    try:
        load("ray")
    except MissingExtra:
        return False
    return True
