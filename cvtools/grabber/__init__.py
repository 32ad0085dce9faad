"""The image grabber: search providers (one module each) and the parallel, deduplicating downloader."""
