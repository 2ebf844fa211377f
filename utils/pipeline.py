"""The whole pipeline in one command: notebooks 01 -> 02 -> 03 under papermill.

    python -m utils.pipeline                       # openai/whisper-tiny on the Swedish sample
    python -m utils.pipeline --offline             # no Hub: OpenAI's tiny.en (real weights) on
                                                   # the English sample, rebuilt offline
    python -m utils.pipeline --model DIR           # a local Whisper checkpoint folder
    python -m utils.pipeline -p 02:max_steps 100 -p 01:source data/cv-corpus-sample/it

Each notebook gets only what it cannot know: 01 its source, model and store folder; 02 the store
and the output folder (the store's manifest says the model, language and task); 03 the model
folder (its generation config says the language). The executed notebooks are saved under the run
folder, and the run ends with the app answering one real request and a summary. Rerunning the same
command after an interruption resumes: the store skips its finished shards and training continues
from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from .errors import PipelineError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {
    "01": "01_feature_pipeline.ipynb",
    "02": "02_training_pipeline.ipynb",
    "03": "03_inference_app.ipynb",
}
# Other names accepted for a notebook in -p NB:NAME and in the YAML file's sections.
ALIASES = {"features": "01", "training": "02", "app": "03", "inference": "03"}
DEFAULT_MODEL = "openai/whisper-tiny"  # the smallest real Whisper: the demo stays quick on a CPU
SAMPLES = ROOT / "data" / "cv-corpus-sample"
# A CPU-sized demo: 30 steps of the decoder (the encoder frozen: a CPU trains the decoder alone
# about 4x faster) move a real model's WER on held-out sentences in a few minutes.
DEMO = {
    "01": {"shard_size": 32},
    "02": {
        "max_steps": 30,
        "batch_size": 8,
        "warmup_steps": 3,
        "eval_steps": 10,
        "save_steps": 10,
        "learning_rate": 1e-5,
        "freeze_encoder": True,
        "generation_max_length": 64,
    },
    "03": {"launch_mode": "check"},
}


def notebook_key(name: str) -> str:
    """'01', '1', 'features', '01_feature_pipeline.ipynb' -> '01'."""
    name = ALIASES.get(name, name).removesuffix(".ipynb")
    for key, notebook in NOTEBOOKS.items():
        if name in (key, key.lstrip("0"), notebook.removesuffix(".ipynb")):
            return key
    raise PipelineError(
        f"unknown notebook {name!r}: use one of {sorted(NOTEBOOKS) + sorted(ALIASES)}"
    )


def parameter_names(key: str) -> set[str]:
    """Names in a notebook's `parameters` cell."""
    import papermill

    return set(papermill.inspect_notebook(str(ROOT / NOTEBOOKS[key])))


def parse_overrides(pairs: Sequence[Sequence[str]], config: dict | None) -> dict[str, dict]:
    """Merge a YAML config ({notebook: {name: value}}) and -p [NB:]NAME VALUE pairs per notebook.

    A -p without a notebook prefix goes to every notebook that has that parameter; values are read
    as YAML (so 10 is an int, true a bool, null None), like papermill's own -y; each notebook's
    config then checks their types.
    """
    out: dict[str, dict] = {key: {} for key in NOTEBOOKS}
    for section, values in (config or {}).items():
        if not isinstance(values, dict):
            raise PipelineError(f"config section {section!r} must map parameter names to values")
        out[notebook_key(str(section))].update(values)
    for name, raw in pairs:
        value = yaml.safe_load(raw)
        if ":" in name:
            key, name = name.split(":", 1)
            targets = [notebook_key(key)]
        else:
            targets = [key for key in NOTEBOOKS if name in parameter_names(key)]
        if not targets:
            raise PipelineError(f"-p {name}: no notebook has a parameter of that name")
        for key in targets:
            if name not in parameter_names(key):
                raise PipelineError(f"-p {key}:{name}: {NOTEBOOKS[key]} has no parameter {name!r}")
            out[key][name] = value
    return out


def offline_model() -> str:
    """OpenAI's tiny.en with real weights, rebuilt offline (utils.models.tiny_en)."""
    from .models.tiny_en import tiny_en_checkpoint

    return str(tiny_en_checkpoint())


def resolve_model(model: str, offline: bool, fallback: bool = True) -> str:
    """A model the run can load: a local dir, a Hub id that is cached or reachable, or tiny.en
    rebuilt offline. When the Hub cannot be reached it says so plainly, then goes on with tiny.en
    (fallback) or stops with PipelineError; it never hangs inside a library."""
    if Path(model).is_dir() and not offline:
        return str(Path(model).resolve())
    if not offline:
        from huggingface_hub import HfApi, snapshot_download

        try:  # already in the local Hugging Face cache: no network needed
            snapshot_download(model, local_files_only=True)
            return model
        except Exception:  # noqa: BLE001 - not cached: ask the Hub
            pass
        try:
            HfApi().model_info(model, timeout=10)
            return model
        except Exception as err:  # noqa: BLE001 - whatever stops it, the message is the same
            message = (
                f"cannot reach the Hugging Face Hub to download {model!r} ({type(err).__name__}).\n"
                "To run offline:\n"
                "  python -m utils.pipeline --offline     (OpenAI's tiny.en, real weights, on the English sample)\n"
                "  python -m utils.pipeline --model DIR   (a Whisper checkpoint folder you have)"
            )
            if not fallback:
                raise PipelineError(message) from None
            print(
                f"{message}\nGoing on with --offline: tiny.en on the English sample.",
                file=sys.stderr,
            )
    return offline_model()


def default_source(model: str) -> Path:
    """The bundled sample the demo trains on: English for an English-only model, else Swedish."""
    from .features import load_checkpoint

    _, abilities = load_checkpoint(model)
    return SAMPLES / ("sv-SE" if abilities.multilingual else "en")


def run_notebook(key: str, run_dir: Path, parameters: dict) -> Path:
    """Execute one notebook with papermill; the executed copy goes to <run>/notebooks/."""
    import papermill

    out = run_dir / "notebooks" / NOTEBOOKS[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("[pipeline] %s -> %s", NOTEBOOKS[key], out)
    try:
        papermill.execute_notebook(
            str(ROOT / NOTEBOOKS[key]),
            str(out),
            parameters=parameters,
            cwd=str(ROOT),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as err:
        raise PipelineError(
            f"{NOTEBOOKS[key]} failed ({err.ename}: {err.evalue}); see {out}"
        ) from None
    return out


def run_pipeline(
    run_dir: str | Path = "runs/pipeline",
    model: str = DEFAULT_MODEL,
    offline: bool = False,
    overrides: dict[str, dict] | None = None,
    fallback: bool = True,
) -> dict:
    """Run 01 -> 02 -> 03 into run_dir and return the summary (also written to summary.json)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = overrides or {}
    model = resolve_model(model, offline, fallback)
    store, model_dir = run_dir / "store", run_dir / "model"
    answer_file = run_dir / "app_check.json"

    params = {key: dict(DEMO[key]) for key in NOTEBOOKS}
    source = default_source(model)
    params["01"].update(source=str(source), model=model, store=str(store))
    params["02"].update(store=str(store), output_dir=str(model_dir))
    if (source / "unseen.tsv").is_file():  # the English sample's second held-out set
        params["01"]["splits"] = "train,dev,test,unseen"
        params["02"]["extra"] = {"extra_eval_splits": ["unseen"]}
    params["03"].update(model=str(model_dir), check_output=str(answer_file))
    for key, values in overrides.items():
        params[key].update(values)

    notebooks = {key: run_notebook(key, run_dir, params[key]) for key in NOTEBOOKS}
    return write_summary(
        run_dir,
        Path(params["01"]["store"]),
        Path(params["02"]["output_dir"]),
        answer_file,
        notebooks,
    )


def write_summary(
    run_dir: Path, store: Path, model_dir: Path, answer_file: Path, notebooks: dict
) -> dict:
    """Collect what a person wants to know after a run into summary.json, and print it."""
    from .store import FeatureStore, directory_bytes

    manifest = FeatureStore(store).manifest
    metrics = json.loads((model_dir / "metrics.json").read_text())
    summary = {
        "clips": manifest["splits"],
        "skipped": manifest.get("skipped", {}),
        "store": str(store),
        "store_bytes": directory_bytes(store),
        "model": metrics.get("model"),
        "language": metrics.get("language"),
        "baseline": metrics.get("baseline"),
        "fine_tuned": metrics.get("final"),
        "extra_evaluations": metrics.get("extra_evaluations", {}),
        "global_step": metrics.get("train", {}).get("global_step"),
        "output_dir": str(model_dir),
        "notebooks": {key: str(path) for key, path in notebooks.items()},
        "app_answer": json.loads(answer_file.read_text()),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    return summary


def _pct(metrics: dict | None, name: str) -> str:
    # utils.train reports WER and CER in percent already (100.0 = as many errors as words).
    value = (metrics or {}).get(name)
    return "n/a" if value is None else f"{value:.1f} %"


def print_summary(summary: dict) -> None:
    """The summary a person reads at the end of `make pipeline`."""
    clips = ", ".join(f"{split} {n}" for split, n in summary["clips"].items())
    skipped = sum(summary["skipped"].values()) if summary["skipped"] else 0
    print("\n== pipeline summary ==")
    print(f"model:           {summary['model']} ({summary['language']})")
    print(f"clips:           {clips}  (skipped: {skipped})")
    print(f"store:           {summary['store']}  ({summary['store_bytes'] / 1e6:.1f} MB)")
    for label, key in (("WER baseline", "baseline"), ("WER fine-tuned", "fine_tuned")):
        m = summary[key]
        print(
            f"{label + ':':<17}{_pct(m, 'wer')} (normalized {_pct(m, 'wer_normalized')}, CER {_pct(m, 'cer')})"
        )
    for name, result in summary["extra_evaluations"].items():
        base, final = result.get("baseline"), result.get("final")
        print(
            f"{name + ':':<17}{_pct(base, 'wer_normalized')} -> {_pct(final, 'wer_normalized')} (normalized WER)"
        )
    print(f"trained:         {summary['global_step']} steps -> {summary['output_dir']}")
    print(f"app answered:    {summary['app_answer'].get('text', '')[:80]!r}")
    print(f"notebooks:       {Path(summary['notebooks']['01']).parent}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--run-dir", default="runs/pipeline", help="where everything goes (rerun = resume)"
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="hub id or local Whisper checkpoint folder"
    )
    parser.add_argument("--offline", action="store_true", help="OpenAI's tiny.en rebuilt offline")
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="stop when the Hub cannot be reached, instead of going on offline",
    )
    parser.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("[NB:]NAME", "VALUE"),
        help="override a notebook parameter, e.g. -p 02:max_steps 100",
    )  # fmt: skip
    parser.add_argument("--config", help="YAML file: {features|training|app: {name: value}}")
    args = parser.parse_args(argv)
    try:
        config = yaml.safe_load(Path(args.config).read_text()) if args.config else None
        overrides = parse_overrides(args.p, config)
        run_pipeline(args.run_dir, args.model, args.offline, overrides, not args.no_fallback)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
