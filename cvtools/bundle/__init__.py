"""The production model outside the app: a self-contained bundle (no dataset, catalog or torch), served
on Ray Serve and run in batch on Ray Data or on this machine alone."""

from .model import FORMAT, FORMAT_VERSION, Bundle, BundleError, load_bundle, read_files

__all__ = ["FORMAT", "FORMAT_VERSION", "Bundle", "BundleError", "load_bundle", "read_files"]
