"""What a run takes from elsewhere and what it refuses: the latest store, the store's model,
language and task, the checkpoint family (English-only, old generation configs, no pad token),
damaged stores, a second process or other settings in an output folder; and its report."""

import json
import shutil
from pathlib import Path

import pytest
from transformers import GenerationConfig, WhisperTokenizer

from utils.config import from_dict, replace
from utils.errors import ConfigError, ModelError, StoreError
from utils.featurize import FeatureConfig, run_feature_pipeline
from utils.models.tiny_random import build_tiny_whisper
from utils.store import FeatureStore, hold
from utils.train import TrainConfig, prepare_run, train
from utils.train.report import history_from_log, model_card, task_words

QUICK = dict(
    batch_size=2,
    eval_max_samples=2,
    generation_max_length=4,
    warmup_steps=0,
    logging_steps=1,
    dataloader_workers=0,
    longform_eval_minutes=0,  # random weights: long-form evaluation is tested on tiny.en
    max_steps=2,
    eval_steps=2,
    save_steps=2,
)


def quick(store, output_dir, **changes) -> TrainConfig:
    return from_dict(
        TrainConfig, {"store": str(store), "output_dir": str(output_dir), **QUICK, **changes}
    )


@pytest.fixture(scope="module")
def english_only(tmp_path_factory) -> Path:
    """A tiny random English-only (*.en) Whisper: tiny.en's vocabulary and generation config."""
    return build_tiny_whisper(
        tmp_path_factory.mktemp("tiny-en-random") / "model", multilingual=False
    )


@pytest.fixture(scope="module")
def english_store(english_only, sample_corpus, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("en-store") / "store"
    cfg = FeatureConfig(
        source=str(sample_corpus / "en"),
        model=str(english_only),
        store=str(store),
        count=6,
        workers=0,
    )
    run_feature_pipeline(cfg)
    return store


def test_no_store_given_trains_on_the_latest_store_notebook_01_made(
    sample_store, sample_corpus, tiny_whisper, tmp_path
):
    # Another source and augmentation give another default path: training with no store given
    # must find the store the last run of the feature pipeline made, not guess one.
    other = tmp_path / "it-augmented"
    run_feature_pipeline(
        FeatureConfig(
            source=str(sample_corpus / "it"), model=str(tiny_whisper), store=str(other),
            count=2, augment="on", workers=0,
        )
    )  # fmt: skip
    prepared = prepare_run(from_dict(TrainConfig, {"output_dir": str(tmp_path / "out")}))
    assert prepared["store_path"] == other.resolve()
    # model, language and task come from that store's manifest
    assert (prepared["run"].model, prepared["run"].language) == (str(tiny_whisper), "it")
    assert prepared["run"].task == "transcribe"


def test_no_store_at_all_says_to_run_notebook_01(monkeypatch, tmp_path):
    monkeypatch.setenv("WHISPER_FEATURES_ROOT", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="run notebook 01"):
        prepare_run(TrainConfig())


def test_english_only_checkpoint_trains_without_language_tokens(
    english_only, english_store, tmp_path
):
    manifest = json.loads((english_store / "manifest.json").read_text())
    assert manifest["settings"]["language"] == "en"
    assert manifest["settings"]["label_prefix"] == [
        50257,
        50362,
    ]  # <|startoftranscript|><|notimestamps|>
    # The baseline evaluation used to stop with "'GenerationConfig' object has no attribute 'lang_to_id'".
    metrics = train(quick(english_store, tmp_path / "out"))
    assert metrics["train"]["global_step"] == 2 and metrics["baseline"] is not None
    assert metrics["language"] == "en"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "transcription of English speech" in card and "language: en" in card
    for language in ("english", "en", None):
        assert (
            prepare_run(quick(english_store, tmp_path / "x", language=language))["run"].language
            == "en"
        )


@pytest.mark.parametrize(("change", "message"), [
    ({"language": "italian"}, r"English-only checkpoint: it cannot decode language='italian'"),
    ({"task": "translate"}, r"English-only checkpoint: it can only transcribe English"),
])  # fmt: skip
def test_english_only_checkpoint_refuses_what_it_cannot_do(
    english_only, english_store, tmp_path, change, message
):
    with pytest.raises(ModelError, match=message) as err:
        prepare_run(quick(english_store, tmp_path / "out", **change))
    assert str(english_only) in str(err.value)  # names the checkpoint
    assert not (tmp_path / "out").exists()


def test_multilingual_checkpoint_with_an_old_generation_config(
    sample_store, tiny_whisper, tmp_path
):
    # Checkpoints saved before transformers put lang_to_id/task_to_id into generation configs.
    old = Path(shutil.copytree(tiny_whisper, tmp_path / "old-model"))
    config = json.loads((old / "generation_config.json").read_text())
    for key in ("lang_to_id", "task_to_id", "is_multilingual"):
        config.pop(key)
    (old / "generation_config.json").write_text(json.dumps(config))
    assert not getattr(GenerationConfig.from_pretrained(old), "lang_to_id", None)
    metrics = train(quick(sample_store, tmp_path / "out", model=str(old)))
    assert metrics["baseline"] is not None and metrics["language"] == "sv"


def test_checkpoint_without_a_pad_token_trains(sample_store, tiny_whisper, tmp_path):
    # transformers 5.15 copies a None pad_token_id onto the model and refuses to train.
    bare = Path(shutil.copytree(tiny_whisper, tmp_path / "no-pad"))
    tokenizer_config = json.loads((bare / "tokenizer_config.json").read_text())
    tokenizer_config.pop("pad_token", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    for name in ("config.json", "generation_config.json"):
        data = json.loads((bare / name).read_text())
        data.pop("pad_token_id", None)
        (bare / name).write_text(json.dumps(data))
    assert WhisperTokenizer.from_pretrained(bare).pad_token_id is None
    metrics = train(quick(sample_store, tmp_path / "out", model=str(bare)))
    assert metrics["train"]["global_step"] == 2


def test_a_damaged_shard_is_refused_before_training(sample_store, tiny_whisper, tmp_path):
    store = Path(shutil.copytree(sample_store, tmp_path / "store"))
    shard = store / "shards/cv-sv-SE/train-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(
        b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 64]
    )
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"train-00001\.parquet: corrupted"):
        train(quick(store, tmp_path / "out", model=str(tiny_whisper)))
    assert not (tmp_path / "out" / "checkpoint-2").exists()


def test_output_folder_in_use_is_refused_naming_the_holder(sample_store, tmp_path):
    out = tmp_path / "out"
    with hold(out, "output folder"), pytest.raises(StoreError, match="in use by .*pid"):
        train(quick(sample_store, out))


def test_other_settings_in_a_finished_folder_are_refused(sample_store, tmp_path):
    out = tmp_path / "out"
    cfg = quick(sample_store, out, baseline=False)
    first = train(cfg)
    assert train(cfg)["final"] == first["final"]  # the same run: nothing to do
    with pytest.raises(
        ConfigError, match=r"holds a run with learning_rate=1e-05.*learning_rate=0\.001"
    ):
        train(replace(cfg, learning_rate=1e-3))


def test_history_shows_the_loss_of_each_evaluation_step_or_nothing():
    log = [
        {"step": 1, "loss": 2.5},
        {"step": 5, "loss": 1.2316},
        {"step": 10, "eval_wer": 50.0, "eval_loss": 1.4},  # no loss logged at step 10
        {"step": 15, "loss": 0.9},
        {"step": 20, "eval_wer": 40.0, "eval_loss": 1.1},
        {"step": 25, "loss": 0.7},
        {"step": 25, "eval_wer": 30.0, "eval_loss": 1.0},
    ]
    rows = history_from_log(log, None)
    assert [(r["step"], r["train_loss"]) for r in rows] == [(10, None), (20, None), (25, 0.7)]


def test_model_card_names_the_language_and_task():
    assert task_words("transcribe", "sv") == "transcription of Swedish speech"
    assert task_words("translate", "it") == "translation of Italian speech into English"
    metrics = {
        "config": {**TrainConfig(store="s").__dict__, "train_splits": ["train"]},
        "model": "openai/whisper-small",
        "language": "sv",
        "task": "transcribe",
        "output_dir": "runs/x",
        "store": "runs/s",
        "final": {"wer": 20.0, "wer_normalized": 15.0, "cer": 5.0},
        "baseline": {"wer": 40.0, "wer_normalized": 30.0, "cer": 10.0},
        "train": {"global_step": 10},
        "history": [],
    }
    card = model_card(
        metrics, {"settings": {"model": "openai/whisper-small"}, "splits": {"train": 3}}
    )
    assert (
        card.startswith("---\n")
        and "language: sv" in card
        and "base_model: openai/whisper-small" in card
    )
    assert "transcription of Swedish speech" in card and "any language" not in card
    assert "| base `openai/whisper-small` (no fine-tuning) | 40.00 | 30.00 | 10.00 |" in card


def test_collator_gives_a_share_of_training_labels_timestamps_and_previous_text(sample_store):
    from utils.train import WhisperStoreCollator

    store = FeatureStore(sample_store)
    train = store.dataset(["train"])
    train.training = True
    items = [train[i] for i in range(16)]
    notimestamps, prev = 50363, 50361  # multilingual ids (the tiny test model's)
    collate = WhisperStoreCollator(50258, no_timestamps_id=notimestamps, prev_token_id=prev,
                                   timestamp_share=0.5, prompt_share=0.5, seed=1)  # fmt: skip
    batches = [collate(items) for _ in range(20)]
    stamped = prompted = 0
    for batch in batches:
        labels, inputs = batch["labels"], batch.get("decoder_input_ids")
        for b, item in enumerate(items):
            row = [t for t in labels[b].tolist() if t != -100]
            if notimestamps not in row:  # timestamps instead: speech start ... speech end
                stamped += 1
                start, end = item["speech"]
                assert row[2] == notimestamps + 1 + round(start / 0.02)
                assert (
                    row[-2] == max(row[2], notimestamps + 1 + round(end / 0.02))
                    and row[-1] == 50257
                )
            if inputs is not None and inputs[b, 0].item() == prev:
                prompted += 1  # previous text first, not learned: its labels are -100
                k = inputs[b].tolist().index(50258)
                assert (
                    all(t == -100 for t in labels[b, :k].tolist()) and labels[b, k].item() == row[0]
                )
    assert 0.3 < stamped / 320 < 0.7 and 0.3 < prompted / 320 < 0.7
    # evaluation items are never changed
    evaluation = store.dataset(["test"])
    batch = collate([evaluation[i] for i in range(6)])
    assert "decoder_input_ids" not in batch and (batch["labels"] == notimestamps).sum() == 6
