"""Start CV Tools: python run.py [--host H] [--port P] [--dataset DIR] [--neuronet MODEL]."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CV Tools web app")
    parser.add_argument("--host", help="address to bind (default from config.py: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default from config.py: 8000)")
    parser.add_argument("--dataset", dest="dataset_dir", help="dataset folder")
    parser.add_argument("--neuronet", help="Hugging Face model id or a save_pretrained folder")
    parser.add_argument("--config", help="another config.py")
    args = parser.parse_args(argv)

    from pathlib import Path

    from cvtools.settings import DEFAULT_CONFIG, SettingsError, load_settings

    try:
        settings = load_settings(
            Path(args.config) if args.config else DEFAULT_CONFIG,
            host=args.host,
            port=args.port,
            dataset_dir=args.dataset_dir,
            neuronet=args.neuronet,
        )
    except SettingsError as exc:
        print(f"CV Tools cannot start: {exc}", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from cvtools.web import create_app, server

    print(f"CV Tools: dataset {settings.dataset_dir}; open http://{settings.host}:{settings.port}/", flush=True)
    uvicorn.Server(server.config(create_app(settings), settings.host, settings.port, log_level="info")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
