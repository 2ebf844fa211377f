"""Writing a transcript: plain text, SubRip (.srt) and WebVTT (.vtt), by segment or word by word."""

from __future__ import annotations

from pathlib import Path


def format_timestamp(seconds: float, decimal: str = ".") -> str:
    """HH:MM:SS.mmm (VTT) or HH:MM:SS,mmm (SRT, decimal=',')."""
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def cues(transcript, words: bool = False) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue: one per segment, or one per word when `words` (segments
    without word times stay whole)."""
    out, last = [], 0.0
    for s in transcript.segments:
        if words and s.words:
            for w in s.words:  # a player shows no 0-ms cue: 20 ms at least, never overlapping
                start = round(max(w.start, last), 3)
                last = round(max(w.end, start + 0.02), 3)
                out.append((start, last, w.text))
        else:
            out.append((s.start, s.end, s.text))
            last = s.end
    return out


def to_txt(transcript) -> str:
    """Plain text, one segment per line."""
    return "".join(f"{s.text}\n" for s in transcript.segments)


def to_srt(transcript, words: bool = False) -> str:
    """SubRip subtitles: numbered cues, 'HH:MM:SS,mmm --> HH:MM:SS,mmm', blank line between."""
    return "\n".join(
        f"{i}\n{format_timestamp(a, ',')} --> {format_timestamp(b, ',')}\n{text}\n"
        for i, (a, b, text) in enumerate(cues(transcript, words), start=1)
    )


def to_vtt(transcript, words: bool = False) -> str:
    """WebVTT subtitles: 'WEBVTT' header, then 'HH:MM:SS.mmm --> HH:MM:SS.mmm' cues."""
    # "-->" may not appear inside a cue's text in VTT
    body = [
        f"{format_timestamp(a)} --> {format_timestamp(b)}\n{text.replace('-->', '->')}\n"
        for a, b, text in cues(transcript, words)
    ]
    return "\n".join(["WEBVTT\n", *body])


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt}


def write_outputs(
    transcript, out_dir: str | Path, stem: str, formats=("txt", "srt", "vtt"), words: bool = False
) -> list[Path]:
    """Write the transcript as <out_dir>/<stem>.<fmt> for each format (subtitles word by word when
    `words`); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        text = WRITERS[fmt](transcript) if fmt == "txt" else WRITERS[fmt](transcript, words)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
