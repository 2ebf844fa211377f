"""python -m utils.app --model DIR [options]: serve the transcriber (options: TranscribeOptions'
and AppOptions' fields, e.g. --language sv --concurrency 2 --allow-private-links)."""

import dataclasses
import sys

from ..cli import run
from ..transcribe import TranscribeOptions
from .service import AppOptions
from .ui import launch_app


def _arguments(parser) -> None:
    parser.add_argument(
        "--model", required=True, help="checkpoint dir, CTranslate2 export or Hub id"
    )
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the local network")
    parser.add_argument(
        "--port", type=int, default=None, help="default: Gradio's (7860 or the next free)"
    )
    parser.add_argument("--share", action="store_true", help="public gradio.live link")
    parser.add_argument(
        "--export-ct2", action="store_true", help="convert to CTranslate2 first (faster on CPU)"
    )


def _main(args, transcribe: TranscribeOptions, app: AppOptions) -> int:
    launch_app(
        args.model,
        share=args.share or None,
        server_name=args.host,
        server_port=args.port,
        export_ct2=args.export_ct2,
        **dataclasses.asdict(transcribe),
        **dataclasses.asdict(app),
    )
    return 0


def main(argv=None) -> int:
    return run(
        "python -m utils.app",
        "Serve a Whisper transcriber (Gradio).",
        [TranscribeOptions, AppOptions],
        _main,
        argv,
        extra=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
