"""python -m utils.transcribe FILES... --model DIR [options]: transcripts and subtitles.

Options are TranscribeOptions' fields (--language sv, --task translate, --word-timestamps,
--strategy sequential, ...); each file gives <out>/<stem>.txt (+ .srt/.vtt). The exit status is 1
when a file failed (it is named; the others are still written), 2 for a bad option.
"""

import sys
from pathlib import Path

from ..audio import format_duration
from ..cli import run
from ..errors import AudioError
from .export import export_ctranslate2
from .options import TranscribeOptions
from .subtitles import write_outputs
from .transcriber import Transcriber


def _arguments(parser) -> None:
    parser.add_argument("files", nargs="+", help="audio or video files")
    parser.add_argument(
        "--model", required=True, help="checkpoint dir, CTranslate2 export or Hub id"
    )
    parser.add_argument("--out", default=None, help="output dir (default: next to each input)")
    parser.add_argument("--srt", action="store_true", help="also write .srt subtitles")
    parser.add_argument("--vtt", action="store_true", help="also write .vtt subtitles")
    parser.add_argument(
        "--word-cues",
        action="store_true",
        help="subtitles word by word (implies --word-timestamps)",
    )
    parser.add_argument(
        "--export-ct2", action="store_true", help="export the model to CTranslate2 first"
    )


def _main(args, options: TranscribeOptions) -> int:
    if args.export_ct2:
        print(f"exported to {export_ctranslate2(args.model)}", file=sys.stderr)
    if args.word_cues:
        options = TranscribeOptions(**{**options.__dict__, "word_timestamps": True})
    transcriber = Transcriber(args.model, options)
    formats = ["txt"] + ["srt"] * args.srt + ["vtt"] * args.vtt
    failed = 0
    for file in args.files:
        try:
            result = transcriber.transcribe(file)
        except AudioError as err:  # one bad file does not stop the batch
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        out_dir = Path(args.out) if args.out else Path(file).parent
        paths = write_outputs(result, out_dir, Path(file).stem, formats, words=args.word_cues)
        print(
            f"{file}: {format_duration(result.duration)}, language {result.language}, "
            f"{len(result.segments)} segments, {result.info['seconds']:.1f} s -> "
            + ", ".join(map(str, paths)),
            file=sys.stderr,
        )
        print(result.text)
    return 1 if failed else 0


def main(argv=None) -> int:
    return run(
        "python -m utils.transcribe",
        "Transcribe or translate audio/video files with a Whisper checkpoint.",
        [TranscribeOptions],
        _main,
        argv,
        extra=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
