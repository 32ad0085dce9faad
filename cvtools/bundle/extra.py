"""Ray, the optional extra (requirements-ray.txt; requirements-test.txt includes it, so CI runs the Ray
tests). The app itself never needs it: only `serve` and `classify --ray` load it, here, by name, and a
machine without it gets one clear sentence instead of an ImportError. (The shared requirements check
knows requirements.txt and requirements-test.txt only; Ray is declared in requirements-ray.txt.)"""

from __future__ import annotations

import importlib
import os
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


def init(address: str | None) -> None:
    """A local Ray without an address; on a cluster the cvtools package travels with the job."""
    import cvtools

    ray = load("ray")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, runtime_env={"py_modules": [os.path.dirname(cvtools.__file__)]}, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
