"""Common Voice releases: a locale folder of split TSVs and clips/*.mp3, as Mozilla ships them.

    cv-corpus-17.0-2024-03-15/sv-SE/{train,dev,test,validated,...}.tsv
    cv-corpus-17.0-2024-03-15/sv-SE/clips/common_voice_sv-SE_12345.mp3

The TSVs are read with quoting off (Common Voice sentences contain bare quote characters). They
are checked when the source opens, before any work starts: every clip path must be a plain file
name inside clips/ (an absolute path or one that leaves the folder would pull host files into the
store), and no clip may appear twice, in one split or across splits (a test clip repeated in train
would leak into training). A missing clip is not checked here: the pipeline reports it as
unreadable and goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SourceError
from ..whisper_lang import DEFAULT_SPLITS
from .base import Example, Source, check_name
from .tables import read_header, read_rows

# Columns every split TSV needs.
REQUIRED_COLUMNS = ("path", "sentence")


def find_locale_dirs(root: Path, depth: int = 2) -> list[Path]:
    """Directories under root (root included) that look like a Common Voice locale (a train.tsv)."""
    found = []
    level = [root]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if (d / "train.tsv").is_file() or (d / "validated.tsv").is_file():
                found.append(d)
            else:
                # never list clips/ itself: a big locale has a million files in it
                subdirs = (
                    p for p in d.iterdir() if p.name != "clips" and not p.name.startswith(".")
                )
                nxt.extend(sorted(p for p in subdirs if p.is_dir() and not p.is_symlink()))
        level = nxt
    return found


def check_clip_name(clip: str, tsv: Path, row: int) -> str:
    """`clip` if it is a plain file name (what Common Voice writes), else SourceError."""
    if not clip:
        raise SourceError(f"{tsv}, row {row}: empty 'path'")
    if "/" in clip or "\\" in clip or clip in (".", "..") or clip.startswith("~") or ":" in clip:
        raise SourceError(
            f"{tsv}, row {row}: clip path {clip[:120]!r} is not a file name inside clips/ "
            "(absolute paths and folders are refused)"
        )
    return clip


class CommonVoiceSource(Source):
    """A Common Voice locale directory: <locale>/{train,dev,test}.tsv + clips/*.mp3."""

    def __init__(
        self,
        locale_dir: Path,
        splits: Sequence[str] | None = None,
        name: str | None = None,
        origin: str | None = None,
    ):
        self.locale_dir = Path(locale_dir).resolve()
        self.locale = self.locale_dir.name
        self.clips_dir = self.locale_dir / "clips"
        self.origin = origin or str(locale_dir)
        self.name = check_name(name or f"cv-{self.locale}", str(locale_dir))
        self._splits = list(splits or DEFAULT_SPLITS)
        self._check()

    def _tsv(self, split: str) -> Path:
        return self.locale_dir / f"{split}.tsv"

    def _columns(self, split: str) -> tuple[int, int]:
        tsv = self._tsv(split)
        if not tsv.is_file():
            raise SourceError(f"Common Voice split {split!r}: file not found: {tsv}")
        header = read_header(tsv, "\t", quoting=False)
        for column in REQUIRED_COLUMNS:
            if column not in header:
                raise SourceError(f"{tsv}: missing column {column!r} (columns: {header})")
        return header.index("path"), header.index("sentence")

    def _rows(self, split: str) -> Iterator[tuple[Path, int, str, str]]:
        """(tsv, row, clip file name, sentence) of one split."""
        tsv = self._tsv(split)
        path_col, text_col = self._columns(split)
        for row, cells in read_rows(tsv, "\t", quoting=False):
            if row == 1 or not cells or all(not c.strip() for c in cells):
                continue
            clip = cells[path_col].strip() if path_col < len(cells) else ""
            text = cells[text_col].strip() if text_col < len(cells) else ""
            yield tsv, row, check_clip_name(clip, tsv, row), text

    def _check(self) -> None:
        # One pass over the asked splits before any work starts: bad rows and repeated clips
        # fail here, naming the file and row, instead of halfway through a long extraction.
        seen: dict[str, tuple[Path, int]] = {}
        for split in self._splits:
            for tsv, row, clip, _ in self._rows(split):
                if clip in seen:
                    first = seen[clip]
                    raise SourceError(
                        f"{tsv}, row {row}: clip {clip!r} repeats {first[0].name} row {first[1]} "
                        "(a clip may appear once, in one split)"
                    )
                seen[clip] = (tsv, row)

    def splits(self) -> list[str]:
        return list(self._splits)

    def examples(self, split: str) -> Iterator[Example]:
        self._check_split(split)
        for _, _, clip, text in self._rows(split):
            yield Example(
                id=PurePosixPath(clip).stem,
                split=split,
                text=text,
                audio=str(self.clips_dir / clip),
                source=self.name,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "common_voice",
            "origin": self.origin,
            "release": self.locale_dir.parent.name,  # e.g. cv-corpus-17.0-2024-03-15
            "locale": self.locale,
        }


def open_common_voice(
    root: Path,
    locale: str | None = None,
    splits: Sequence[str] | None = None,
    name: str | None = None,
    origin: str | None = None,
    default_locale: str | None = None,
) -> CommonVoiceSource:
    """Find the locale dir under a locale dir, a release root, or an extracted archive.

    `locale` must be found; `default_locale` (a locale shared by several sources, see combine)
    only chooses among several locales, so a spec that names one locale keeps its own.
    """
    candidates = find_locale_dirs(root)
    if not locale and default_locale and len(candidates) > 1:
        locale = default_locale
    if locale:
        chosen = [d for d in candidates if d.name == locale]
        if not chosen:
            have = sorted({d.name for d in candidates})
            raise SourceError(
                f"{origin or root}: no Common Voice locale {locale!r} (found: {have})"
            )
    else:
        chosen = candidates
        if len(chosen) > 1:
            have = sorted(d.name for d in chosen)
            raise SourceError(f"{origin or root}: several locales {have}; pass locale=...")
    if not chosen:
        raise SourceError(
            f"{origin or root}: not a Common Voice release (no train.tsv in it or in a locale folder)"
        )
    return CommonVoiceSource(chosen[0], splits=splits, name=name, origin=origin or str(root))
