"""Waveform augmentation for training clips: noise, pitch shift and speed change, reproducibly.

One seed project built an "augmented feature pipeline": every training clip, with probability 0.5
per technique, got random noise, a pitch change and a speed change (noise and pitch "uniform in
0.0-0.1", speed factor uniform in 0.5-1.5) before feature extraction. This module does the same as
parameters of the feature pipeline, with three differences that matter for a store:

- augmented clips are added as extra copies next to the untouched original, and only for the
  training split (`augmented_copies` returns nothing for dev/test);
- every random draw comes from (seed, example key, copy index) alone, so a store is the same
  whatever the number of workers or the order they finish in, and a resumed run redoes a shard
  exactly;
- what was applied is returned as a small JSON-able dict, which the store keeps per row.

Pitch shift and time stretch run on Signalsmith Stretch (the `python-stretch` bindings), the engine
behind audiomentations' `PitchShift` and `TimeStretch` (their default method, "signalsmith_stretch").
We call it directly instead of through those two transforms for speed: one pass changes tempo and
pitch together where the two transforms take two (43 % less CPU when both fire), and it runs
Signalsmith's "cheaper" preset (~20 % less); that is what keeps an augmented clip near the cost of a
plain one. Gaussian noise is generated here too: audiomentations' `AddGaussianNoise` draws from the
global `np.random` state (not reproducible per clip across worker processes) and refuses an
amplitude of 0, where the seed's range starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .config import coerce
from .errors import ConfigError

# Techniques in the order they are applied: tempo first, then pitch, and noise last so that the
# noise is a flat channel noise rather than something stretched or transposed with the voice.
TECHNIQUES = ("speed", "pitch", "noise")
TRAIN_SPLIT = "train"  # augmented copies go to this split only; dev/test stay as recorded
# The seed's pitch change was "uniform in 0.0-0.1". Read as semitones (librosa's n_steps) that is
# at most a 0.6 % frequency change, inaudible and useless for training; read as a fraction of the
# frequency it is up to 10 %, i.e. 12 * log2(1.1) = 1.65 semitones. We take the latter and apply it
# both ways (a voice made only higher biases the data), so the default range is +-1.65 semitones.
SEED_PITCH_SEMITONES = round(12 * math.log2(1.1), 2)
# audiomentations' limits for the same engine: +-2 octaves of transposition, 0.1x-10x tempo.
MAX_PITCH_SEMITONES = 24.0
MIN_SPEED, MAX_SPEED = 0.1, 10.0
# Drawn amounts are rounded before use, so the recorded value is exactly the applied one and the
# JSON in the store stays short; 1e-4 of a semitone/factor/amplitude is far below anything audible.
AMOUNT_DECIMALS = 4
# Signalsmith's "cheaper" preset (100 ms blocks every 40 ms instead of 120 ms every 30 ms): ~20 %
# less CPU, and on a test tone the same envelope ripple (1.9 %) as the default preset.
STRETCH_CHEAPER = True
COPY_SUFFIX = "#aug"  # augmented row id = f"{example id}#aug{copy}", unique next to the original


@dataclass(frozen=True)
class AugmentConfig:
    """What to do to training clips; `parse_augment` builds one from notebook/CLI parameters."""

    # which techniques may fire on a copy: any of "noise", "pitch", "speed"
    techniques: tuple[str, ...] = TECHNIQUES
    # probability that each technique fires on a copy, drawn independently (seed project: 0.5)
    p_noise: float = 0.5
    p_pitch: float = 0.5
    p_speed: float = 0.5
    # std of the added Gaussian noise, in full-scale units, drawn uniformly in [min, max]; the
    # seed's "0.0-0.1". 0.1 is loud: about 0 dB SNR on the sample corpus (speech RMS ~0.09)
    noise_range: tuple[float, ...] = (0.0, 0.1)
    # pitch shift in semitones, drawn uniformly in [min, max]; negative = lower voice
    pitch_range: tuple[float, ...] = (-SEED_PITCH_SEMITONES, SEED_PITCH_SEMITONES)
    # tempo factor, drawn uniformly in [min, max]: 2.0 plays twice as fast (half the duration),
    # 0.5 half as fast; the pitch is kept (a time stretch, not a resampling)
    speed_range: tuple[float, ...] = (0.5, 1.5)
    # augmented copies added per training clip; the original is always kept too. 0 = off
    copies: int = 1
    # base of every random draw, together with the example key and the copy index
    seed: int = 0
    # slowed-down copies are sped up just enough to stay within Whisper's 30 s window, which the
    # feature pipeline would otherwise skip as too long
    max_duration: float = 30.0
    # keep a copy on which no technique fired (an exact duplicate of the original row)? With three
    # techniques at p=0.5 that is 1 copy in 8; by default it is dropped rather than stored twice
    keep_unchanged: bool = False

    def __post_init__(self):
        # Coerce what notebooks and YAML hand over (lists, strings: utils.config), then validate;
        # every message names the parameter it is about.
        coerce(self, "augment")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"augment.{f.name}={value!r} must be a finite number")
        object.__setattr__(self, "techniques", _techniques(self.techniques))
        for name in ("p_noise", "p_pitch", "p_speed"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(
                    f"augment.{name}: a probability must be in [0, 1], got {getattr(self, name)}"
                )
        noise = _range("noise_range", self.noise_range)
        if noise[0] < 0 or noise[1] > 1:
            raise ConfigError(
                f"augment.noise_range: amplitudes must be within [0, 1] (full scale), got {noise}"
            )
        pitch = _range("pitch_range", self.pitch_range)
        if max(abs(pitch[0]), abs(pitch[1])) > MAX_PITCH_SEMITONES:
            raise ConfigError(
                f"augment.pitch_range: semitones must be within +-{MAX_PITCH_SEMITONES:g}, got {pitch}"
            )
        speed = _range("speed_range", self.speed_range)
        if speed[0] <= 0:
            raise ConfigError(f"augment.speed_range: factors must be > 0, got {speed}")
        if speed[0] < MIN_SPEED or speed[1] > MAX_SPEED:
            raise ConfigError(
                f"augment.speed_range: factors must be within [{MIN_SPEED:g}, {MAX_SPEED:g}], got {speed}"
            )
        if self.copies < 0:
            raise ConfigError(f"augment.copies: must be >= 0, got {self.copies}")
        if self.max_duration <= 0:
            raise ConfigError(f"augment.max_duration: must be > 0 seconds, got {self.max_duration}")

    @property
    def enabled(self) -> bool:
        """True when this config adds any augmented copy at all."""
        return self.copies > 0 and bool(self.techniques)

    def probability(self, technique: str) -> float:
        """The probability that `technique` fires on a copy (0 when it is not selected)."""
        return getattr(self, f"p_{technique}") if technique in self.techniques else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able settings (lists for tuples), e.g. for the store manifest."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> AugmentConfig:
        """Build from a plain dict (papermill/YAML/JSON); values may be strings.

        Besides the field names, `probability` (or `p`) sets all three per-technique probabilities;
        techniques may be a list or a comma-separated string, ranges a pair or a "min,max" string.
        """
        known = {f.name for f in fields(cls)}
        params = dict(params)
        for alias in ("probability", "p"):
            if alias in params:
                p = params.pop(alias)
                for name in ("p_noise", "p_pitch", "p_speed"):
                    params.setdefault(name, p)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"augment: unknown parameter(s) {unknown}; known: {sorted(known | {'probability'})}"
            )
        return cls(**params)


def parse_augment(value: Any, seed: int | None = None) -> AugmentConfig | None:
    """Turn a notebook/CLI `augment` parameter into a config, or None when augmentation is off.

    Accepts None / False / 0 / "" / "off" / "none" (off), True / 1 / "on" / "default" (the seed
    project's settings), an AugmentConfig, a dict, a JSON object string, or a comma-separated list of
    techniques ("noise,speed"). A config that adds no copies also gives None, so "off" has a single
    spelling in a manifest. `seed` (e.g. the pipeline's seed) is used when the value sets none.
    """
    if value is None or (isinstance(value, int) and value == 0):  # None, False, 0
        return None
    if isinstance(value, AugmentConfig):
        return value if value.enabled else None
    if isinstance(value, str):
        value = _parse_text(value)
    if isinstance(value, int) and value == 1:  # True, "on", or papermill's `-p augment 1`
        value = {}
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"augment: expected a dict, a string, a bool or None, got {value!r}")
    params = dict(value)
    if seed is not None:
        params.setdefault("seed", seed)
    config = AugmentConfig.from_dict(params)
    return config if config.enabled else None


def _parse_text(text: str) -> Any:
    # A string parameter: off/on words, a JSON object, or a list of techniques.
    text = text.strip()
    if text.lower() in ("", "off", "none", "false", "no", "0"):
        return None
    if text.lower() in ("on", "true", "yes", "default", "1"):
        return 1
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"augment: not valid JSON ({err}): {text!r}") from err
    return {"techniques": text}


def draw(config: AugmentConfig, key: str, copy: int = 0) -> dict[str, float]:
    """The techniques that fire on copy `copy` of the clip `key`, with their amounts.

    Depends only on (config, key, copy). Every technique's coin and amount are drawn whether or not
    it is selected, so turning one technique off does not change what the others draw.
    Returns e.g. {"speed": 0.8312, "noise": 0.0421}: speed factor, pitch semitones, noise amplitude.
    """
    rng = np.random.default_rng(_seed_sequence(config.seed, key, copy).spawn(2)[0])
    amounts = {}
    for technique in TECHNIQUES:
        coin = rng.random()
        low, high = getattr(config, f"{technique}_range")
        amount = round(float(rng.uniform(low, high)), AMOUNT_DECIMALS)
        if coin < config.probability(technique):
            amounts[technique] = amount
    return amounts


def augment(
    audio: np.ndarray, sr: int, config: AugmentConfig, key: str, copy: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Augment one clip: returns (audio, applied).

    `key` identifies the clip (its example id, or "source/id"); with `config.seed` and `copy` it
    seeds every draw, so the same inputs always give the same output, in any process. `applied`
    holds what fired: "speed" (tempo factor actually used), "pitch" (semitones), "noise" (noise
    std), plus "speed_drawn" when the factor was raised to fit `config.max_duration`. The output is
    float32 in [-1, 1] and never empty; the input array is not modified.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"augment: {key}: expected non-empty mono audio, got shape {audio.shape}")
    applied = draw(config, key, copy)
    out = audio
    if "speed" in applied:
        applied = _fit_speed(applied, audio.size, sr, config.max_duration)
    if "speed" in applied or "pitch" in applied:
        stretched = _stretch(audio, sr, applied.get("speed", 1.0), applied.get("pitch", 0.0))
        if stretched.size:
            out = stretched
        else:  # a clip of a sample or two sped up: keep it unstretched rather than return nothing
            applied = {k: v for k, v in applied.items() if not k.startswith("speed")}
            if "pitch" in applied:
                out = _stretch(audio, sr, 1.0, applied["pitch"])
    if "noise" in applied and applied["noise"] > 0:
        noise_rng = np.random.default_rng(_seed_sequence(config.seed, key, copy).spawn(2)[1])
        out = out + np.float32(applied["noise"]) * noise_rng.standard_normal(out.size, np.float32)
    out = np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)
    return np.ascontiguousarray(out), applied


def augmented_copies(
    audio: np.ndarray,
    sr: int,
    config: AugmentConfig | None,
    example_id: str,
    split: str,
    source: str = "",
) -> list[tuple[str, np.ndarray, dict[str, float]]]:
    """The augmented copies to store next to an example's original row: [(row id, audio, applied)].

    Empty when augmentation is off (`config` None or 0 copies) or `split` is not the training
    split, so a worker can call it for every example. Row ids are f"{example_id}#aug{k}", k from 1.
    `source` is mixed into the seed so that equal ids in two sources draw differently.
    """
    if config is None or not config.enabled or split != TRAIN_SPLIT:
        return []
    key = f"{source}/{example_id}" if source else example_id
    copies = []
    for copy in range(1, config.copies + 1):
        out, applied = augment(audio, sr, config, key, copy)
        if applied or config.keep_unchanged:
            copies.append((f"{example_id}{COPY_SUFFIX}{copy}", out, applied))
    return copies


def copies_for_store(
    audio: np.ndarray, sr: int, config: AugmentConfig | Mapping | None, example
) -> list[tuple[np.ndarray, str, str]]:
    """`augmented_copies` shaped as store rows need them: [(audio, row id, `augment` column)].

    `example` is a utils.sources.Example (its id, split and source are used); `config` may also be
    the plain dict of `AugmentConfig.to_dict()`, as kept in a picklable pipeline config.
    """
    config = parse_augment(config)
    copies = augmented_copies(audio, sr, config, example.id, example.split, example.source)
    return [(wave, row_id, applied_json(applied)) for row_id, wave, applied in copies]


def applied_json(applied: Mapping[str, float] | None) -> str:
    """The store's `augment` column: "" for an original row, else compact sorted JSON."""
    if applied is None:
        return ""
    return json.dumps(dict(applied), sort_keys=True, separators=(",", ":"))


def _fit_speed(applied: dict[str, float], n_samples: int, sr: int, max_duration: float):
    """Raise a drawn speed factor just enough that the copy fits `max_duration` seconds."""
    factor = applied["speed"]
    scale = 10**AMOUNT_DECIMALS
    fit = math.ceil(n_samples / (max_duration * sr) * scale) / scale  # rounded up: still fits
    if factor < fit:
        return {**applied, "speed": fit, "speed_drawn": factor}
    return applied


def _stretch(audio: np.ndarray, sr: int, factor: float, semitones: float) -> np.ndarray:
    """Time-stretch by `factor` (2.0 = twice as fast) and transpose by `semitones`, in one pass."""
    import python_stretch

    stretch = python_stretch.Signalsmith.Stretch()
    stretch.preset(1, sr, STRETCH_CHEAPER)
    stretch.setTimeFactor(factor)
    stretch.setTransposeSemitones(semitones)
    return stretch.process(np.ascontiguousarray(audio, dtype=np.float32)[np.newaxis])[0]


def _seed_sequence(seed: int, key: str, copy: int) -> np.random.SeedSequence:
    # A stable hash (Python's hash() is salted per process) of everything that identifies a copy.
    digest = hashlib.blake2b(f"{seed}\0{copy}\0{key}".encode(), digest_size=16).digest()
    return np.random.SeedSequence(int.from_bytes(digest, "little"))


def _techniques(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted({n.strip().lower() for n in names} - set(TECHNIQUES) - {""})
    if unknown:
        raise ConfigError(f"augment.techniques: unknown {unknown}; choose from {list(TECHNIQUES)}")
    chosen = {n.strip().lower() for n in names}
    return tuple(
        t for t in TECHNIQUES if t in chosen
    )  # canonical order: same config, same manifest


def _range(name: str, pair: tuple[float, ...]) -> tuple[float, float]:
    if len(pair) != 2:
        raise ConfigError(f"augment.{name}={pair!r} must be a (min, max) pair")
    if pair[0] > pair[1]:
        raise ConfigError(f"augment.{name}: min must not exceed max, got {pair}")
    return (pair[0], pair[1])


__all__ = [
    "TECHNIQUES",
    "AugmentConfig",
    "applied_json",
    "augment",
    "augmented_copies",
    "copies_for_store",
    "draw",
    "parse_augment",
]
