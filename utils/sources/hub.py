"""Hugging Face datasets with an audio column: a Hub repo id or a local dataset folder.

Loaded with `datasets.load_dataset` (parquet mirrors such as fixie-ai/common_voice_17_0, or
google/fleurs at revision "refs/convert/parquet"; script datasets no longer load in datasets 4+).
The audio column is cast to `Audio(decode=False)`, so rows carry the encoded bytes (or a path) and
no torchcodec/FFmpeg decoding happens here; the pipeline's workers decode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SourceError
from ..whisper_lang import DEFAULT_SPLITS, SPLIT_ALIASES
from .base import Example, Source, check_name, order_splits, slug


class HubSource(Source):
    """A Hugging Face dataset with an audio column (see the module docstring)."""

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
        default_name = "hf-" + slug(Path(path).name if os.path.isdir(path) else path.split("/")[-1])
        if config:
            default_name += "-" + slug(config)
        self.name = check_name(name or default_name, f"hf:{path}")
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
        available = order_splits(self._hub_split)
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
