"""What a store is built with, recorded once and compared in full on every rerun.

The settings name the model, its mel bins, the language and task the labels were made for and
their prefix ids: the one source of truth notebook 02 reads. A store built with other settings is
refused, never mixed.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import store as st
from ..audio import SAMPLE_RATE
from ..augment import parse_augment
from ..errors import ConfigError, StoreError
from ..sources import CommonVoiceSource, Source
from ..whisper_lang import Abilities, language_code
from .config import FeatureConfig


def run_language(
    cfg: FeatureConfig, sources: list[Source], abilities: Abilities
) -> tuple[str | None, str]:
    """(language code, task) of the labels: the config's, else the Common Voice locale's (sv-SE
    -> sv) when every source is one, else English for an English-only checkpoint. What the
    checkpoint cannot decode (another language on a *.en model, translate) is refused here."""
    language = cfg.language
    if language is None and abilities.multilingual:
        locales = {s.locale.split("-")[0] for s in sources if isinstance(s, CommonVoiceSource)}
        if len(locales) == 1 and all(isinstance(s, CommonVoiceSource) for s in sources):
            try:
                language = language_code(locales.pop())
            except ConfigError:
                language = None
        if language is None:
            raise ConfigError(
                f"FeatureConfig.language: say which language the transcripts are in (e.g. "
                f"'swedish' or 'sv'); it cannot be told from {[s.name for s in sources]}"
            )
    return abilities.check(cfg.model, language, cfg.task)


def default_store_path(sources, model: str, root: str | Path | None = None, augment=None) -> Path:
    """<root>/<source names>-<model name>, e.g. runs/features/sv-SE-whisper-small; "-augmented" is
    appended when `augment` turns augmentation on, so that a plain store is never refused for it.
    root None: utils.store.default_root() (Drive in Colab, else runs/features)."""
    specs = [sources] if isinstance(sources, (str, Path, dict)) else list(sources)
    names = []
    for spec in specs:
        spec = spec.get("spec", "source") if isinstance(spec, dict) else str(spec)
        spec = spec.split("?", 1)[0].removeprefix("hf:").rstrip("/")
        stem = Path(spec).name.removesuffix(".tar.gz").removesuffix(".tgz").removesuffix(".tar")
        names.append(st.safe_name(stem))
    suffix = "-augmented" if parse_augment(augment) else ""
    model_name = st.safe_name(Path(str(model).rstrip("/")).name)
    return Path(root or st.default_root()) / f"{'+'.join(names)}-{model_name}{suffix}"


def store_path(cfg: FeatureConfig) -> Path:
    """The store folder of a config: its `store`, else the default for its sources and model."""
    return (
        Path(cfg.store)
        if cfg.store
        else default_store_path(cfg.source, cfg.model, augment=cfg.augment)
    )


def make_settings(
    cfg: FeatureConfig,
    sources: list[Source],
    processor,
    language: str | None,
    task: str,
    splits: dict,
) -> dict:
    """The manifest's settings: everything that decides the store's content."""
    return {
        "model": cfg.model,
        "n_mels": int(processor.feature_extractor.feature_size),
        "language": language,
        "task": task,
        "sampling_rate": SAMPLE_RATE,
        "label_prefix": list(processor.tokenizer.prefix_tokens),
        "augment": cfg.augment,
        "sources": [{**source.describe(), "splits": splits[source.name]} for source in sources],
        "subsample": {"fraction": cfg.fraction, "count": cfg.count, "seed": cfg.seed},
        "shard_size": cfg.shard_size,
        "max_duration": cfg.max_duration,
    }


def comparable(settings: dict) -> dict:
    """Settings without what may change between runs of one store: where a source lives (a
    remounted Drive, another working directory)."""
    out = json.loads(json.dumps(settings))
    for source in out.get("sources", []):
        source.pop("origin", None)
    return out


def check_settings(store: Path, settings: dict) -> None:
    """Refuse to mix stores: a store built with other settings makes this run fail, naming both.

    settings.json is written when a store is first created, before any shard, so a store killed
    before its manifest was written is protected too.
    """
    recorded = st.read_json(store / st.SETTINGS)
    if recorded is None:
        manifest = st.read_json(store / st.MANIFEST)
        recorded = manifest.get("settings") if isinstance(manifest, dict) else None
    if recorded is None:
        if store.is_dir() and any(p for p in (store / st.SHARDS).rglob("*.json")):
            raise StoreError(
                f"{store}: holds shards but no {st.SETTINGS}; not a store this pipeline can resume"
            )
        st.write_json_atomic(store / st.SETTINGS, settings)
        return
    old, new = comparable(recorded), comparable(settings)
    if old != new:
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        was = ", ".join(f"{k}={old.get(k)!r}" for k in keys)
        now = ", ".join(f"{k}={new.get(k)!r}" for k in keys)
        raise StoreError(
            f"{store}: this store was built with {was}; this run asks for {now}. "
            "Use another store path, or delete this store to rebuild it."
        )
    if not (store / st.SETTINGS).is_file():
        st.write_json_atomic(store / st.SETTINGS, recorded)
