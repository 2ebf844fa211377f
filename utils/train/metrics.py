"""Word and character error rates, as the model card and the evaluation report them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("wer", "wer_normalized", "cer")


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """WER (orthographic, as written), WER after Whisper's BasicTextNormalizer (lower case, no
    punctuation or bracketed text), and CER, in percent.

    Pairs whose reference is empty (after normalization, for the normalized WER) are left out, as
    WER is undefined for them.
    """
    import jiwer
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    normalize = BasicTextNormalizer()

    def rate(fn, preds, refs) -> float:
        pairs = [(p, r) for p, r in zip(preds, refs, strict=True) if r.strip()]
        if not pairs:
            return float("nan")
        return 100.0 * fn([r for _, r in pairs], [p for p, _ in pairs])

    return {
        "wer": rate(jiwer.wer, predictions, references),
        "wer_normalized": rate(
            jiwer.wer, [normalize(p) for p in predictions], [normalize(r) for r in references]
        ),
        "cer": rate(jiwer.cer, predictions, references),
    }


def make_compute_metrics(tokenizer):
    """The Trainer's compute_metrics: decode generated ids and labels, then `text_metrics`."""
    # Generated sequences are padded with -100 when gathered across batches / processes; the pad
    # token (<|endoftext|>) is what padding decodes to anyway.
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )

    def compute_metrics(pred) -> dict[str, float]:
        pred_ids = np.where(np.asarray(pred.predictions) < 0, pad_id, np.asarray(pred.predictions))
        label_ids = np.where(np.asarray(pred.label_ids) < 0, pad_id, np.asarray(pred.label_ids))
        predictions = tokenizer.batch_decode(pred_ids, skip_special_tokens=True)
        references = tokenizer.batch_decode(label_ids, skip_special_tokens=True)
        return text_metrics(predictions, references)

    return compute_metrics


def strip_prefix(metrics: dict, prefix: str = "eval_") -> dict:
    """{"eval_wer": 1} -> {"wer": 1}; keeps numbers only."""
    return {
        k.removeprefix(prefix): v
        for k, v in metrics.items()
        if k.startswith(prefix) and isinstance(v, (int, float))
    }
