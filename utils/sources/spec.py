"""Opening sources from their specs: a path, "hf:<dataset>", or a mapping, and combining them.

open_source("data/cv-corpus-sample/sv-SE")                       # Common Voice locale dir
open_source("cv-corpus-17.0-2024-03-15", locale="sv-SE")          # release root + locale
open_source("cv-corpus-21.0-2025-03-14-sv-SE.tar.gz")             # archive, extracted once
open_source("mdc:<dataset id>", locale="sv-SE")                   # from Mozilla Data Collective
open_source("hf:fixie-ai/common_voice_17_0", config="sv-SE")      # Hub parquet mirror
open_source("hf:google/fleurs?config=sv_se&revision=refs/convert/parquet&text_column=transcription")
open_source("my_recordings.csv", test_fraction=0.1)               # bring your own data
combine(["data/cv-corpus-sample/sv-SE", {"spec": "data/cv-corpus-sample", "locale": "it"}])
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from ..config import convert
from ..errors import ConfigError, SourceError
from ..whisper_lang import normalize_split
from .archive import extract_archive, is_archive
from .base import Source
from .common_voice import open_common_voice
from .hub import HubSource
from .manifest import ManifestSource
from .mdc import download_mdc

# Options that mean nothing to a kind of source and are dropped for it (a shared locale=... picks
# a Common Voice locale; Hub datasets take config=..., manifests have none).
LOCALE_OPTIONS = ("locale", "default_locale")


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


def open_source(spec: str | Path | Mapping[str, Any], **options: Any) -> Source:
    """Open one source from its spec.

    spec:
      - a Common Voice locale dir (".../cv-corpus-17.0-2024-03-15/sv-SE"), or the release root
        (or any folder above the locale) with locale="sv-SE";
      - a Common Voice archive (.tar.gz/.tgz/.tar) as downloaded from Mozilla Data Collective,
        extracted once into cache_dir (default "<archive>.extracted/"), then read as a dir;
      - "mdc:<dataset id>": that archive downloaded from Mozilla Data Collective first (utils.
        sources.mdc: official client, resumed, verified; "?sample=true" for the dataset's sample);
      - a .csv/.tsv manifest (see ManifestSource);
      - "hf:<repo id or local dataset dir>" (see HubSource).
    options (by kind): name (override the source name), splits (which splits, default train/dev/test),
      locale, cache_dir (Common Voice); dev_fraction, test_fraction, audio_root, quoting
      (manifest); download_dir, sample (mdc); config, revision, audio_column, text_column,
      id_column, streaming, split_names, token, cache_dir (Hub).
    Options inside the spec (mapping or "?k=v") take precedence over keyword options.
    """
    spec, own = parse_spec(spec)
    options = {**options, **own}
    if spec.startswith("hf:"):
        return HubSource(spec[3:], **_take(options, HubSource, spec, drop=LOCALE_OPTIONS))
    if spec.startswith("mdc:"):
        sample = convert(f"{spec}: sample", bool, options.pop("sample", False))
        spec = str(download_mdc(spec[4:], options.pop("download_dir", None), sample))
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source not found: {spec}")
    if path.is_file() and is_archive(path):
        root = extract_archive(path, options.pop("cache_dir", None))
        return open_common_voice(root, origin=str(path), **_take(options, open_common_voice, spec))
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        return ManifestSource(path, **_take(options, ManifestSource, spec, drop=LOCALE_OPTIONS))
    if path.is_dir():
        return open_common_voice(path, **_take(options, open_common_voice, spec))
    raise SourceError(
        f"{spec}: not a source (expected a Common Voice folder or .tar.gz, a .csv/.tsv manifest, "
        "or hf:<dataset>)"
    )


def _take(options: dict[str, Any], target, spec: str, drop=()) -> dict[str, Any]:
    """The options `target` accepts, converted to its parameter types ("?streaming=false" arrives
    as a string); an option it does not know is an error naming it."""
    params = inspect.signature(target).parameters
    hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    accepted = set(params) - {"self", "root", "origin", "manifest", "path", "locale_dir"}
    options = {k: v for k, v in options.items() if k not in drop}
    unknown = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unknown:
        raise SourceError(
            f"{spec}: unknown option(s) {unknown}; this kind accepts {sorted(accepted)}"
        )
    kwargs = {}
    for key, value in options.items():
        if key not in accepted:
            continue
        if isinstance(value, str) and key != "split_names":
            try:
                value = convert(f"{spec}: {key}", hints[key], value)
            except ConfigError as err:
                raise SourceError(str(err)) from None
        kwargs[key] = value
    if kwargs.get("splits") is not None:
        splits = kwargs["splits"]
        splits = [splits] if isinstance(splits, str) else splits
        kwargs["splits"] = [normalize_split(s) for s in splits]
        if not kwargs["splits"]:
            raise SourceError(f"{spec}: splits=[] selects nothing; leave it out for the defaults")
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
