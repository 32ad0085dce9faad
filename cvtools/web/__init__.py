"""The web layer: create_app(settings) and thin routers over the plain modules."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazily: auth and the error pages are used by the model bundle's server, which has no torch.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
