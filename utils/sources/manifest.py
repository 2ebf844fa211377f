"""Your own recordings: a CSV/TSV manifest of audio paths and transcripts.

Columns: audio path (`path`, `audio` or `file`), transcript (`sentence`, `text`, `transcript` or
`transcription`), and optionally `split` and `id` (default id: the audio path as written).
Relative paths are resolved against the manifest's folder; every path, relative or absolute, must
lie inside `audio_root` (default: that folder), so a manifest from someone else cannot pull other
files of this machine into a store. Without a split column every row is "train", unless
dev_fraction / test_fraction assign a stable share of rows (by a hash of the id) to dev / test. A
`.tsv` is tab-separated, a `.csv` comma-separated; both use standard CSV quoting (as pandas and
spreadsheets write them) unless quoting=False, and a TSV in Common Voice's layout (a client_id
column) is read with quoting off, since its sentences contain bare quotes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SourceError
from ..whisper_lang import DEV, TEST, TRAIN, normalize_split
from .base import Example, Source, check_name, hash_unit, order_splits, slug
from .tables import read_header, read_rows

# Column names accepted, in order of preference.
AUDIO_COLUMNS = ("path", "audio", "file")
TEXT_COLUMNS = ("sentence", "text", "transcript", "transcription")


class ManifestSource(Source):
    """A CSV/TSV manifest of your own recordings (see the module docstring)."""

    def __init__(
        self,
        manifest: Path,
        splits: Sequence[str] | None = None,
        name: str | None = None,
        dev_fraction: float = 0.0,
        test_fraction: float = 0.0,
        quoting: bool | None = None,
        audio_root: str | Path | None = None,
    ):
        self.manifest = Path(manifest)
        self.delimiter = "\t" if self.manifest.suffix.lower() == ".tsv" else ","
        self.quoting = quoting
        self.base = self.manifest.resolve().parent
        self.name = check_name(name or slug(self.manifest.stem), str(manifest))
        for param, value in (("dev_fraction", dev_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= float(value) < 1.0:
                raise SourceError(f"{param}={value!r} must be in [0, 1)")
        if dev_fraction + test_fraction >= 1.0:
            raise SourceError(
                f"dev_fraction + test_fraction = {dev_fraction + test_fraction} leaves no training data"
            )
        self.dev_fraction = float(dev_fraction)
        self.test_fraction = float(test_fraction)
        self._columns = self._read_columns()
        self.root = Path(audio_root).expanduser().resolve() if audio_root else self.base
        # One pass at open time: bad rows fail before the pipeline starts, and splits() is known.
        found = {ex.split for ex in self._rows()}
        if not found:
            raise SourceError(f"{self.manifest}: no rows under the header; nothing to extract")
        if splits is None:
            self._splits = order_splits(found)
        else:
            missing = [s for s in splits if s not in found]
            if missing:
                raise SourceError(
                    f"{self.manifest}: no rows for split(s) {missing} (has {sorted(found)})"
                )
            self._splits = list(splits)

    def _read_columns(self) -> dict[str, int | None]:
        header = [h.lower() for h in read_header(self.manifest, self.delimiter, True)]
        common_voice = self.delimiter == "\t" and "client_id" in header
        self._stem_ids = common_voice  # Common Voice ids are clip stems, as in CommonVoiceSource
        if self.quoting is None:
            self.quoting = not common_voice
        if common_voice and (self.base / "clips").is_dir():
            self.base = self.base / "clips"  # e.g. a filtered copy of validated.tsv in a locale dir

        def pick(options: Sequence[str], role: str, required: bool) -> int | None:
            for option in options:
                if option in header:
                    return header.index(option)
            if required:
                raise SourceError(
                    f"{self.manifest}: missing {role} column (one of {list(options)}); "
                    f"columns: {header}"
                )
            return None

        if "split" in header and (self.dev_fraction or self.test_fraction):
            raise SourceError(
                f"{self.manifest} has a 'split' column: dev_fraction/test_fraction would be ignored; "
                "drop them or the column"
            )
        return {
            "audio": pick(AUDIO_COLUMNS, "audio path", True),
            "text": pick(TEXT_COLUMNS, "transcript", True),
            "split": pick(("split",), "split", False),
            "id": pick(("id",), "id", False),
        }

    def _audio_path(self, written: str, row: int) -> Path:
        path = Path(written).expanduser()
        path = Path(os.path.normpath(path if path.is_absolute() else self.base / path))
        if not path.is_relative_to(self.root):
            raise SourceError(
                f"{self.manifest}, row {row}: audio path {written[:120]!r} is outside {self.root} "
                "(paths must stay inside the manifest's folder; pass audio_root=... to widen it)"
            )
        return path

    def _rows(self) -> Iterator[Example]:
        cols = self._columns
        seen: dict[str, int] = {}
        for row, cells in read_rows(self.manifest, self.delimiter, bool(self.quoting)):
            if row == 1 or not cells or all(not cell.strip() for cell in cells):
                continue

            def cell(key: str, cells=cells) -> str:
                i = cols[key]
                return cells[i].strip() if i is not None and i < len(cells) else ""

            audio = cell("audio")
            if not audio:
                raise SourceError(f"{self.manifest}, row {row}: empty audio path")
            path = self._audio_path(audio, row)
            written = PurePosixPath(audio.replace("\\", "/"))
            ex_id = cell("id") or (written.stem if self._stem_ids else written.as_posix())
            if ex_id in seen:
                raise SourceError(
                    f"{self.manifest}, row {row}: id {ex_id!r} repeats row {seen[ex_id]} "
                    "(add an 'id' column to tell them apart)"
                )
            seen[ex_id] = row
            if cols["split"] is not None:
                split = normalize_split(cell("split"))
                if not split:
                    raise SourceError(f"{self.manifest}, row {row}: empty split")
            else:
                split = self._assign_split(ex_id)
            yield Example(ex_id, split, cell("text"), str(path), self.name)

    def _assign_split(self, ex_id: str) -> str:
        # Hash of the id only (not of its row number), so adding rows never moves existing ones.
        u = hash_unit("split", ex_id)
        if u < self.test_fraction:
            return TEST
        if u < self.test_fraction + self.dev_fraction:
            return DEV
        return TRAIN

    def splits(self) -> list[str]:
        return list(self._splits)

    def examples(self, split: str) -> Iterator[Example]:
        self._check_split(split)
        return (ex for ex in self._rows() if ex.split == split)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "manifest",
            "origin": str(self.manifest),
            "dev_fraction": self.dev_fraction,
            "test_fraction": self.test_fraction,
            "quoting": self.quoting,
            "audio_root": str(self.root) if self.root != self.base else None,
        }
