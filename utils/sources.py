"""Where the clips come from: Common Voice releases, Hub datasets and your own manifests.

Every source yields the same `Example` (id, split, text, audio, source), lazily and in a fixed order,
so the feature pipeline never needs to know where a clip came from. Audio is *not* decoded here: an
Example carries a file path or the encoded bytes, and the pipeline's workers decode it (a missing or
broken file is then reported there as unreadable and skipped, never stopping the run).

    open_source("data/cv-corpus-sample/sv-SE")                       # Common Voice locale dir
    open_source("cv-corpus-17.0-2024-03-15", locale="sv-SE")          # release root + locale
    open_source("cv-corpus-21.0-2025-03-14-sv-SE.tar.gz")             # archive, extracted once
    open_source("hf:fixie-ai/common_voice_17_0", config="sv-SE")      # Hub parquet mirror
    open_source("hf:google/fleurs", config="sv_se", revision="refs/convert/parquet",
                text_column="transcription")
    open_source("my_recordings.csv", test_fraction=0.1)               # bring your own data
    combine(["data/cv-corpus-sample/sv-SE", {"spec": "data/cv-corpus-sample", "locale": "it"}])
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qsl

# The splits a Common Voice release ships for training and evaluation (validated/other/invalidated
# exist too and can be asked for with splits=...).
DEFAULT_SPLITS = ("train", "dev", "test")
# Default roles (as the course lab and Mozilla's fine-tuning blueprint do): train on train + dev,
# report WER on test. Test sets stay per source and are never mixed into training.
TRAIN_SPLITS = ("train", "dev")
EVAL_SPLITS = ("test",)

# Hub datasets call the held-out dev split "validation"; one name for it keeps store paths uniform.
SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev", "eval": "dev"}

# Column names accepted in a bring-your-own manifest, in order of preference.
MANIFEST_AUDIO_COLUMNS = ("path", "audio", "file")
MANIFEST_TEXT_COLUMNS = ("sentence", "text", "transcript", "transcription")

# Source names become directory names in the store (shards/<source>/...), so keep them portable.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Written inside an extracted archive once every member is on disk; its absence means "redo".
_EXTRACTED_MARKER = ".extracted.json"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


class SourceError(ValueError):
    """A source that cannot be read as asked; the message names the file, row, column or option."""


@dataclass(frozen=True)
class Example:
    """One clip to featurize."""

    id: str  # unique within its source (Common Voice: clip file stem)
    split: str  # "train" | "dev" | "test" (Hub "validation" maps to "dev")
    text: str  # transcript; "" passes through (the pipeline skips it with a reason)
    audio: str | bytes  # a file path, or encoded bytes (Hub parquet rows); decoded in workers
    source: str  # short name, e.g. "cv-sv-SE"; used in store paths and the manifest


class Source:
    """What `open_source` returns: a named collection of splits of Examples."""

    name: str

    def splits(self) -> list[str]:
        """The split names this source yields, e.g. ["train", "dev", "test"]."""
        raise NotImplementedError

    def examples(self, split: str) -> Iterator[Example]:
        """Yield the Examples of one split lazily, in the same order every time."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-able description of where the data came from (for the store's manifest)."""
        return {"name": self.name, "kind": type(self).__name__}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} splits={self.splits()}>"

    def _check_split(self, split: str) -> None:
        if split not in self.splits():
            raise SourceError(
                f"source {self.name!r} has no split {split!r}; it has {self.splits()}"
            )


# --------------------------------------------------------------------------------------- helpers


def normalize_split(split: str) -> str:
    """Map Hub/user split names onto ours ("validation" -> "dev"); others pass through lowercased."""
    key = str(split).strip().lower()
    return SPLIT_ALIASES.get(key, key)


def _check_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise SourceError(
            f"source name {name!r} (from {what}) must be letters, digits, '.', '_' or '-' "
            "since it becomes a folder in the store; pass name=..."
        )
    return name


def _slug(text: str) -> str:
    """A portable source name from free text (repo ids, file stems)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return slug or "source"


def _order_splits(names: Iterable[str]) -> list[str]:
    """train, dev, test first (in that order), then any others alphabetically."""
    names = set(names)
    known = [s for s in DEFAULT_SPLITS if s in names]
    return known + sorted(names - set(known))


def _as_split_list(splits: str | Sequence[str] | None) -> list[str] | None:
    if splits is None:
        return None
    if isinstance(splits, str):
        splits = [s for s in re.split(r"[,+\s]+", splits) if s]
    out = [normalize_split(s) for s in splits]
    if not out:
        raise SourceError("splits=[] selects nothing; leave it out for the default splits")
    return out


def _hash_unit(*parts: object) -> float:
    """A stable number in [0, 1) from the parts (same on every machine and Python run)."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# -------------------------------------------------------------------------------- Common Voice


def _read_tsv_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return next(reader, [])


def _find_locale_dirs(root: Path, depth: int = 2) -> list[Path]:
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
                nxt.extend(sorted(p for p in subdirs if p.is_dir()))
        level = nxt
    return found


class CommonVoiceSource(Source):
    """A Common Voice locale directory: <locale>/{train,dev,test}.tsv + clips/*.mp3.

    The TSVs are read with quoting off (Common Voice sentences contain bare quote characters).
    Clip paths are not checked here: a missing clip reaches the pipeline, which reports it as
    unreadable and goes on.
    """

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
        self.name = _check_name(name or f"cv-{self.locale}", str(locale_dir))
        self._splits = list(splits or DEFAULT_SPLITS)
        # Fail before any work starts: every asked split needs its TSV with path and sentence.
        for split in self._splits:
            self._tsv_columns(split)

    def _tsv(self, split: str) -> Path:
        return self.locale_dir / f"{split}.tsv"

    def _tsv_columns(self, split: str) -> tuple[int, int]:
        tsv = self._tsv(split)
        if not tsv.is_file():
            raise SourceError(f"Common Voice split {split!r}: file not found: {tsv}")
        header = _read_tsv_header(tsv)
        for column in ("path", "sentence"):
            if column not in header:
                raise SourceError(f"{tsv}: missing column {column!r} (columns: {header})")
        return header.index("path"), header.index("sentence")

    def splits(self) -> list[str]:
        return list(self._splits)

    def examples(self, split: str) -> Iterator[Example]:
        self._check_split(split)
        tsv = self._tsv(split)
        path_col, text_col = self._tsv_columns(split)
        with open(tsv, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            for row in reader:
                if not row:
                    continue
                clip = row[path_col].strip() if path_col < len(row) else ""
                if not clip:
                    raise SourceError(f"{tsv}, line {reader.line_num}: empty 'path'")
                text = row[text_col].strip() if text_col < len(row) else ""
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


def _open_common_voice(
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
    candidates = _find_locale_dirs(root)
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


# ---------------------------------------------------------------------------- archives (.tar.gz)


def _archive_stamp(archive: Path) -> dict[str, Any]:
    st = archive.stat()
    return {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise SourceError(f"{archive}: refusing unsafe member {name!r} (absolute path or '..')")


def extract_archive(archive: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Extract a (Common Voice) tar archive once and return the extracted directory.

    The default cache is `<archive>.extracted/` beside the archive (in Colab, pass a cache_dir on
    local disk rather than on Drive). Members are extracted into a hidden folder beside the cache,
    which is renamed into place after a marker recording the archive's size and mtime: a rerun
    reuses a complete extraction, a killed one leaves nothing that looks complete, and a changed
    archive is extracted again. A cache_dir that holds anything else is refused, never emptied.
    Members with absolute paths or '..' are refused, and tarfile's "data" filter refuses links
    that leave the folder and strips special files and permissions.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise SourceError(f"archive not found: {archive}")
    target = Path(cache_dir) if cache_dir else archive.with_name(archive.name + ".extracted")
    stamp = _archive_stamp(archive)
    marker = target / _EXTRACTED_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return target
        except ValueError:
            pass  # unreadable marker: extract again
    if target.exists() and not marker.is_file() and any(target.iterdir()):
        raise SourceError(
            f"cache_dir {target} is not empty and is not an extraction of {archive.name}; "
            "choose a new or empty folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):  # left by a killed extraction
        shutil.rmtree(stale, ignore_errors=True)
    # Extract next to the target and rename at the end, so a killed run never leaves a folder that
    # looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:  # one pass: a .tar.gz is decompressed only once
                    _check_member(archive, member)
                    tar.extract(member, tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as err:
            if isinstance(err, tarfile.FilterError):
                raise SourceError(f"{archive}: refusing unsafe member: {err}") from err
            raise SourceError(f"{archive}: cannot extract: {err}") from err
        (tmp / _EXTRACTED_MARKER).write_text(json.dumps(stamp))
        if target.exists():
            shutil.rmtree(target)  # empty, or our extraction of an older archive (checked above)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


# --------------------------------------------------------------------------------- manifests


class ManifestSource(Source):
    """A CSV/TSV manifest of your own recordings.

    Columns: audio path (`path`, `audio` or `file`), transcript (`sentence`, `text`, `transcript`
    or `transcription`), and optionally `split` and `id` (default id: the audio path as written).
    Relative paths are resolved against the manifest's folder. Rows are numbered as in a
    spreadsheet (the header is row 1) in error messages. Without a split column every row is
    "train", unless dev_fraction / test_fraction assign a stable share of rows (by a hash of the id)
    to dev / test. A `.tsv` is tab-separated, a `.csv` comma-separated; both use standard CSV quoting
    (as pandas and spreadsheets write them) unless quoting=False, and a TSV in Common Voice's layout
    (a client_id column) is read with quoting off, since its sentences contain bare quotes.
    """

    def __init__(
        self,
        manifest: Path,
        splits: Sequence[str] | None = None,
        name: str | None = None,
        dev_fraction: float = 0.0,
        test_fraction: float = 0.0,
        quoting: bool | None = None,
    ):
        self.manifest = Path(manifest)
        self.delimiter = "\t" if self.manifest.suffix.lower() == ".tsv" else ","
        self.quoting = quoting
        self.base = self.manifest.resolve().parent
        self.name = _check_name(name or _slug(self.manifest.stem), str(manifest))
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
        # One pass at open time: bad rows fail before the pipeline starts, and splits() is known.
        found = {ex.split for ex in self._rows()}
        if splits is None:
            self._splits = _order_splits(found)
        else:
            missing = [s for s in splits if s not in found]
            if missing:
                raise SourceError(
                    f"{self.manifest}: no rows for split(s) {missing} (has {sorted(found)})"
                )
            self._splits = list(splits)

    def _reader(self, f) -> csv.reader:
        if self.quoting is False:
            return csv.reader(f, delimiter=self.delimiter, quoting=csv.QUOTE_NONE)
        return csv.reader(f, delimiter=self.delimiter)

    def _open(self):
        # utf-8-sig: spreadsheet programs put a byte-order mark in front of the header
        return open(self.manifest, encoding="utf-8-sig", newline="")

    def _read_columns(self) -> dict[str, int | None]:
        with self._open() as f:
            header = [h.strip().lower() for h in next(self._reader(f), [])]
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
            "audio": pick(MANIFEST_AUDIO_COLUMNS, "audio path", True),
            "text": pick(MANIFEST_TEXT_COLUMNS, "transcript", True),
            "split": pick(("split",), "split", False),
            "id": pick(("id",), "id", False),
        }

    def _rows(self) -> Iterator[Example]:
        cols = self._columns
        seen: dict[str, int] = {}
        with self._open() as f:
            reader = self._reader(f)
            next(reader)
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                line = reader.line_num

                def cell(key: str, row=row) -> str:
                    i = cols[key]
                    return row[i].strip() if i is not None and i < len(row) else ""

                audio = cell("audio")
                if not audio:
                    raise SourceError(f"{self.manifest}, row {line}: empty audio path")
                path = Path(audio).expanduser()
                if not path.is_absolute():
                    path = self.base / path
                written = PurePosixPath(audio.replace("\\", "/"))
                ex_id = cell("id") or (written.stem if self._stem_ids else written.as_posix())
                if ex_id in seen:
                    raise SourceError(
                        f"{self.manifest}, row {line}: id {ex_id!r} repeats row {seen[ex_id]} "
                        "(add an 'id' column to tell them apart)"
                    )
                seen[ex_id] = line
                if cols["split"] is not None:
                    split = normalize_split(cell("split"))
                    if not split:
                        raise SourceError(f"{self.manifest}, row {line}: empty split")
                else:
                    split = self._assign_split(ex_id)
                yield Example(ex_id, split, cell("text"), str(path), self.name)

    def _assign_split(self, ex_id: str) -> str:
        # Hash of the id only (not of its row number), so adding rows never moves existing ones.
        u = _hash_unit("split", ex_id)
        if u < self.test_fraction:
            return "test"
        if u < self.test_fraction + self.dev_fraction:
            return "dev"
        return "train"

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
        }


# ----------------------------------------------------------------------------------- Hub


class HubSource(Source):
    """A Hugging Face dataset with an audio column: a Hub repo id or a local dataset folder.

    Loaded with `datasets.load_dataset` (parquet mirrors such as fixie-ai/common_voice_17_0, or
    google/fleurs at revision "refs/convert/parquet"; script datasets no longer load in datasets 4+).
    The audio column is cast to `Audio(decode=False)`, so rows carry the encoded bytes (or a path)
    and no torchcodec/FFmpeg decoding happens here; the pipeline's workers decode.
    """

    def __init__(
        self,
        path: str,
        config: str | None = None,
        revision: str | None = None,
        audio_column: str = "audio",
        text_column: str = "sentence",
        id_column: str | None = None,
        streaming: bool = True,
        split_names: Mapping[str, str] | None = None,
        splits: Sequence[str] | None = None,
        name: str | None = None,
        cache_dir: str | None = None,
        token: str | bool | None = None,
    ):
        if path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().is_dir():
            # clearly meant as a local folder: say so instead of asking the Hub for it
            raise SourceError(f"hf:{path}: local dataset folder not found")
        path = str(Path(path).expanduser()) if path.startswith("~") else path
        import datasets  # imported here: only Hub sources need it

        self.path = path
        self.config = config
        self.revision = revision
        self.audio_column = audio_column
        self.text_column = text_column
        self.id_column = id_column
        self.streaming = bool(streaming)
        default_name = "hf-" + _slug(
            Path(path).name if os.path.isdir(path) else path.split("/")[-1]
        )
        if config:
            default_name += "-" + _slug(config)
        self.name = _check_name(name or default_name, f"hf:{path}")
        try:
            self._dict = datasets.load_dataset(
                path,
                name=config,
                revision=revision,
                streaming=self.streaming,
                cache_dir=cache_dir,
                token=token,
            )
        except Exception as err:  # the library's own message says what failed; add which source
            hint = ""
            if "reach" in str(err) or "connect" in str(err).lower():
                hint = (
                    " -- the Hub cannot be reached from here: use a local dataset folder "
                    "(hf:/path/to/dir), a Common Voice folder or archive, or a manifest"
                )
            raise SourceError(
                f"hf:{path} (config={config!r}, revision={revision!r}): {err}{hint}"
            ) from err
        if isinstance(split_names, str):  # "?split_names=validation:dev,eval_test:test"
            pairs = [item.split(":", 1) for item in split_names.split(",") if item]
            if any(len(pair) != 2 for pair in pairs):
                raise SourceError(f"hf:{path}: split_names={split_names!r} must be 'hub:ours,...'")
            split_names = dict(pairs)
        # our split name -> the dataset's split name
        mapping = {**SPLIT_ALIASES, **{k.lower(): v for k, v in (split_names or {}).items()}}
        self._hub_split = {mapping.get(s.lower(), s.lower()): s for s in self._dict}
        available = _order_splits(self._hub_split)
        if splits is None:
            self._splits = [s for s in available if s in DEFAULT_SPLITS] or available
        else:
            missing = [s for s in splits if s not in self._hub_split]
            if missing:
                raise SourceError(f"hf:{path}: no split(s) {missing} (has {available})")
            self._splits = list(splits)
        for split in self._splits:
            self._check_columns(self._dict[self._hub_split[split]], split)

    def _check_columns(self, ds, split: str) -> None:
        columns = ds.column_names  # None when a streaming dataset cannot tell without reading
        if columns is None:
            return
        for role, column in (
            ("audio_column", self.audio_column),
            ("text_column", self.text_column),
            ("id_column", self.id_column),
        ):
            if column is not None and column not in columns:
                raise SourceError(
                    f"hf:{self.path} split {self._hub_split[split]!r}: no column {column!r} "
                    f"({role}); columns: {columns}"
                )

    def splits(self) -> list[str]:
        return list(self._splits)

    def examples(self, split: str) -> Iterator[Example]:
        from datasets import Audio

        self._check_split(split)
        ds = self._dict[self._hub_split[split]]
        ds = ds.cast_column(self.audio_column, Audio(decode=False))
        seen: set[str] = set()
        for index, row in enumerate(ds):
            if self.text_column not in row or self.audio_column not in row:
                raise SourceError(
                    f"hf:{self.path} split {self._hub_split[split]!r}: row {index} has no "
                    f"{self.text_column!r} or {self.audio_column!r} column; columns: {list(row)}"
                )
            audio = row[self.audio_column] or {}
            data = audio.get("bytes") or audio.get("path") or b""  # b"": reported unreadable later
            ex_id = self._row_id(row, audio, split, index)
            if ex_id in seen:  # Hub ids are not ours to fix; keep them unique, deterministically
                ex_id = f"{ex_id}~{index}"
            seen.add(ex_id)
            text = row[self.text_column]
            yield Example(ex_id, split, "" if text is None else str(text).strip(), data, self.name)

    def _row_id(self, row: dict, audio: dict, split: str, index: int) -> str:
        if self.id_column:
            return str(row[self.id_column])
        for candidate in (row.get("path"), audio.get("path")):
            if isinstance(candidate, str) and candidate:
                return PurePosixPath(candidate.replace("\\", "/")).stem
        return f"{split}-{index:08d}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "hub",
            "origin": f"hf:{self.path}",
            "config": self.config,
            "revision": self.revision,
            "audio_column": self.audio_column,
            "text_column": self.text_column,
        }


# --------------------------------------------------------------------------- entry points


def parse_spec(spec: str | Mapping[str, Any] | Path) -> tuple[str, dict[str, Any]]:
    """Split a source spec into (spec, options).

    A spec is a string, or a mapping {"spec": ..., option: value, ...} (handy in YAML and notebook
    parameters). A string may carry options after '?' as in a URL query, e.g.
    "hf:google/fleurs?config=sv_se&revision=refs/convert/parquet&text_column=transcription".
    """
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "spec" not in options:
            raise SourceError(f"source {dict(spec)!r} needs a 'spec' key")
        return str(options.pop("spec")), options
    spec = str(spec)
    if "?" in spec and not os.path.exists(spec):
        spec, query = spec.rsplit("?", 1)
        return spec, dict(parse_qsl(query, keep_blank_values=True))
    return spec, {}


_BOOL_STRINGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def open_source(spec: str | Path | Mapping[str, Any], **options: Any) -> Source:
    """Open one source from its spec.

    spec:
      - a Common Voice locale dir (".../cv-corpus-17.0-2024-03-15/sv-SE"), or the release root
        (or any folder above the locale) with locale="sv-SE";
      - a Common Voice archive (.tar.gz/.tgz/.tar) as downloaded from Mozilla Data Collective,
        extracted once into cache_dir (default "<archive>.extracted/"), then read as a dir;
      - a .csv/.tsv manifest (see ManifestSource);
      - "hf:<repo id or local dataset dir>" (see HubSource).
    options (by kind): name (override the source name), splits (which splits, default train/dev/test),
      locale, cache_dir (Common Voice); dev_fraction, test_fraction (manifest); config, revision,
      audio_column, text_column, id_column, streaming, split_names, token, cache_dir (Hub).
    Options inside the spec (mapping or "?k=v") take precedence over keyword options.
    """
    spec, own = parse_spec(spec)
    options = {**options, **own}
    options["splits"] = _as_split_list(options.get("splits"))
    for key in ("streaming", "quoting"):  # "?streaming=false" arrives as a string
        value = options.get(key)
        if isinstance(value, str):
            if value.lower() not in _BOOL_STRINGS:
                raise SourceError(f"{spec}: {key}={value!r} must be true or false")
            options[key] = _BOOL_STRINGS[value.lower()]
    if spec.startswith("hf:"):
        for key in ("locale", "default_locale"):  # a Hub config is passed as config=...
            options.pop(key, None)
        kwargs = _take(options, HubSource, "hf:" + spec[3:])
        return HubSource(spec[3:], **kwargs)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source not found: {spec}")
    if path.is_file() and _is_archive(path):
        cache_dir = options.pop("cache_dir", None)
        root = extract_archive(path, cache_dir)
        return _open_common_voice(
            root, origin=str(path), **_take(options, _open_common_voice, spec)
        )
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        for key in ("locale", "default_locale"):
            options.pop(key, None)
        return ManifestSource(path, **_take(options, ManifestSource, spec))
    if path.is_dir():
        return _open_common_voice(path, **_take(options, _open_common_voice, spec))
    raise SourceError(
        f"{spec}: not a source (expected a Common Voice folder or .tar.gz, a .csv/.tsv manifest, "
        "or hf:<dataset>)"
    )


def _take(options: dict[str, Any], target, spec: str) -> dict[str, Any]:
    """Keep the options `target` accepts; an option it does not know is an error naming it."""
    import inspect

    accepted = set(inspect.signature(target).parameters) - {"self", "root", "origin"}
    options = {k: v for k, v in options.items() if k in accepted or k != "default_locale"}
    unknown = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unknown:
        raise SourceError(
            f"{spec}: unknown option(s) {unknown}; this kind accepts {sorted(accepted)}"
        )
    kwargs = {k: v for k, v in options.items() if k in accepted}
    for key in ("dev_fraction", "test_fraction"):
        if isinstance(kwargs.get(key), str):
            try:
                kwargs[key] = float(kwargs[key])
            except ValueError:
                raise SourceError(f"{spec}: {key}={kwargs[key]!r} must be a number") from None
    return kwargs


def combine(
    specs: str
    | Path
    | Mapping[str, Any]
    | Source
    | Iterable[str | Path | Mapping[str, Any] | Source],
    **options: Any,
) -> list[Source]:
    """Open several sources for one store; each keeps its own name, splits and test set.

    `options` are shared defaults; per-source options go in the spec (a mapping or "?k=v") and win.
    A shared locale=... only picks the locale in a release root or archive that holds several, so
    "cv/sv-SE" and "cv/it" combine under locale="sv-SE"; manifests and Hub datasets ignore it.
    Already opened Sources pass through. Two sources with the same name (e.g. the same locale from
    two releases) are refused: give one a name=....
    """
    if isinstance(specs, (str, Path, Mapping, Source)):
        specs = [specs]
    shared = dict(options)
    if shared.get("locale"):
        shared["default_locale"] = shared.pop("locale")
    sources = [s if isinstance(s, Source) else open_source(s, **shared) for s in specs]
    if not sources:
        raise SourceError("combine: no sources given")
    names: dict[str, Source] = {}
    for source in sources:
        if source.name in names:
            raise SourceError(
                f"two sources named {source.name!r} ({names[source.name].describe().get('origin')} "
                f"and {source.describe().get('origin')}): pass name=... to one of them"
            )
        names[source.name] = source
    return sources


def subsample(
    examples: Iterable[Example],
    fraction: float | None = None,
    count: int | None = None,
    seed: int = 0,
) -> Iterator[Example]:
    """Keep a deterministic subset, streaming (nothing is read ahead).

    fraction keeps an example when a hash of (seed, source, id) falls below it, so the choice of a
    clip never depends on the order or on the other clips; count then keeps the first `count` of
    those (alone, it is simply the first `count` in the source's order). Apply it per split.
    """
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise SourceError(f"fraction={fraction!r} must be a number in (0, 1]")
        if not 0.0 < fraction <= 1.0:
            raise SourceError(f"fraction={fraction!r} must be in (0, 1]")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise SourceError(f"count={count!r} must be an integer >= 1")
    return _subsample(iter(examples), fraction, count, seed)


def _subsample(
    examples: Iterator[Example], fraction: float | None, count: int | None, seed: int
) -> Iterator[Example]:
    kept = 0
    for ex in examples:
        if (
            fraction is not None
            and fraction < 1.0
            and _hash_unit(seed, ex.source, ex.id) >= fraction
        ):
            continue
        yield ex
        kept += 1
        if count is not None and kept >= count:
            return  # stop without pulling one more example from a (possibly streaming) source
