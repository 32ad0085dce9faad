"""The web layer: create_app(settings) and thin routers over the plain modules."""

from .app import create_app

__all__ = ["create_app"]
