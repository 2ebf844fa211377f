"""Training throughput: this project's default setup against the Hugging Face "Fine-Tune Whisper"
blog's, on the same machine, data and model architecture, in one run.

    python benchmarks/bench_training.py [--model tiny|small] [--device cpu|cuda] [--steps N]

- blog: features stored as `datasets` rows of float32 [80][3000] lists (what the blog's
  `prepare_dataset` + `map` + `save_to_disk` make), the blog's `DataCollatorSpeechSeq2SeqWithPadding`
  (`feature_extractor.pad`), `Seq2SeqTrainingArguments(per_device_train_batch_size=16,
  gradient_checkpointing=True, fp16=True)` with the blog-era AdamW (`adamw_torch`), no DataLoader
  workers. fp16 needs a GPU, so on CPU it runs in fp32.
- project: `TrainConfig()` defaults through `utils.train` (same batch 16; gradient
  checkpointing on with a GPU, as the blog, off on CPU): the compact store read by `FeatureStore`
  + `WhisperStoreCollator`, bf16 where the GPU has it, TF32, fused AdamW, SDPA attention,
  DataLoader workers with pinned memory on a GPU.
- project-flip-ckpt: the same with gradient checkpointing the other way (on a GPU: off, the knob
  to turn when memory allows: faster, but more memory per sample).

Each setup trains the same randomly initialised model (seed 0) in its own process: --warmup steps
first, then --steps timed ones; samples/s counts the timed steps only. Peak memory is
torch.cuda.max_memory_allocated on CUDA, the process's peak RSS on CPU. The data path alone (store
read + collate into padded [16, 80, 3000] batches, no model) is timed for both recipes as well.

--model small is whisper-small's architecture (12+12 layers, d_model 768, 242 M parameters) with
random weights and the tiny offline Whisper's tokenizer (the same 51,865-token vocabulary); --model
tiny is the tiny offline Whisper itself, for a quick CPU run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from benchmarks.machine import machine  # noqa: E402
from utils.features import expand_log_mel, load_processor  # noqa: E402
from utils.store import FeatureStore, read_json, write_manifest, write_shard  # noqa: E402
from utils.train import TrainConfig, WhisperStoreCollator  # noqa: E402
from utils.train import data as train_data  # noqa: E402
from utils.train import trainer as train_trainer  # noqa: E402

TARGET_SPEEDUP = 2.5  # issue 3: at least 2.5x the blog's samples/s on the GPU ...
TARGET_DATA_PATH = 1000  # ... and a data path of at least 1,000 samples/s on 2 cores
BATCH = 16  # the blog's per-device batch, and this project's default
# whisper-small's sizes (openai/whisper-small config.json).
SMALL = dict(
    d_model=768,
    encoder_layers=12,
    decoder_layers=12,
    encoder_attention_heads=12,
    decoder_attention_heads=12,
    encoder_ffn_dim=3072,
    decoder_ffn_dim=3072,
)
SETUPS = ("blog", "project", "project-flip-ckpt")


def machine_line() -> str:
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return machine(f"{gpu}, torch {torch.__version__}")


# ------------------------------------------------------------------------------------------ data


def build_sample_store(work: Path, tiny: Path) -> Path:
    """The sv-SE sample corpus as a store made with the tiny Whisper's processor (80 mel bins)."""
    from utils.featurize import FeatureConfig, run_feature_pipeline

    store = work / "sample-store"
    source = REPO / "data" / "cv-corpus-sample" / "sv-SE"
    run_feature_pipeline(
        FeatureConfig(
            source=str(source), store=str(store), model=str(tiny), language="sv", workers=0
        )
    )
    return store


def replicate_store(sample: Path, dest: Path, rows: int, shard_size: int = 1000) -> Path:
    """A store of `rows` training rows: the sample's rows repeated under new ids, in shards of
    `shard_size` (row groups of 64) like a real store."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = FeatureStore(sample)
    table = pa.concat_tables([pq.read_table(f) for f in store.files()])
    base = table.to_pylist()
    manifest = read_json(sample / "manifest.json")
    manifest.update(shards=[], splits={"train": rows}, sources={}, bytes=0)
    for index, start in enumerate(range(0, rows, shard_size)):
        chunk = []
        for i in range(start, min(rows, start + shard_size)):
            row = dict(base[i % len(base)], id=f"row-{i:07d}", split="train")
            chunk.append(row)
        record = write_shard(dest, row["source"], "train", index, chunk)
        manifest["shards"].append(record)
        manifest["bytes"] += record["bytes"]
    manifest["sources"] = {base[0]["source"]: {"train": rows}}
    write_manifest(dest, manifest)
    return dest


def build_blog_dataset(store: Path, dest: Path) -> Path:
    """The same rows the way the blog stores them: input_features as float32 [80][3000] lists."""
    import datasets

    dataset = FeatureStore(store).dataset(["train"])

    def rows():
        for i in range(len(dataset)):
            item = dataset[i]
            features = expand_log_mel(item["features"], item["pad_value"])
            yield {"input_features": features, "labels": item["labels"]}

    features = datasets.Features(
        {
            "input_features": datasets.List(datasets.List(datasets.Value("float32"))),
            "labels": datasets.List(datasets.Value("int64")),
        }
    )
    built = datasets.Dataset.from_generator(rows, features=features, cache_dir=str(dest / "cache"))
    built.save_to_disk(str(dest / "blog-dataset"))
    return dest / "blog-dataset"


class BlogCollator:
    """DataCollatorSpeechSeq2SeqWithPadding, as in the blog."""

    def __init__(self, processor, decoder_start_token_id: int):
        self.processor = processor
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, features):
        input_features = [{"input_features": feature["input_features"]} for feature in features]
        batch = self.processor.feature_extractor.pad(input_features, return_tensors="pt")
        label_features = [{"input_ids": feature["labels"]} for feature in features]
        labels_batch = self.processor.tokenizer.pad(label_features, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def data_path_speed(store: Path, blog_dataset: Path, tiny: Path, n: int) -> dict[str, float]:
    """Samples/s of each recipe's data path alone: read rows in random order, collate batches."""
    import datasets

    rng = np.random.default_rng(0)
    results = {}
    store_rows = FeatureStore(store).dataset(["train"])
    collate = WhisperStoreCollator(decoder_start_token_id=50258)
    order = rng.permutation(len(store_rows))[:n]
    start = time.perf_counter()  # cold: row groups decoded on first use, as in a first epoch
    for i in range(0, len(order) - BATCH + 1, BATCH):
        collate([store_rows[int(j)] for j in order[i : i + BATCH]])
    results["project"] = (len(order) // BATCH * BATCH) / (time.perf_counter() - start)

    # A store bigger than the reader's cache is read in grouped order (RowGroupSampler); a cache
    # of one row group makes every group be decoded from disk here.
    small_cache = FeatureStore(store).dataset(["train"], cache_bytes=1)
    order = small_cache.grouped_order(seed=0)[:n]
    start = time.perf_counter()
    for i in range(0, len(order) - BATCH + 1, BATCH):
        collate([small_cache[int(j)] for j in order[i : i + BATCH]])
    results["project_grouped_uncached"] = (len(order) // BATCH * BATCH) / (
        time.perf_counter() - start
    )

    blog = datasets.load_from_disk(str(blog_dataset))
    blog_collate = BlogCollator(load_processor(tiny, "sv", "transcribe"), 50258)
    m = min(n, 20 * BATCH)  # the blog's path is slow: a few batches tell its speed
    order = rng.permutation(len(blog))[:m]
    start = time.perf_counter()
    for i in range(0, len(order) - BATCH + 1, BATCH):
        blog_collate([blog[int(j)] for j in order[i : i + BATCH]])
    results["blog"] = (len(order) // BATCH * BATCH) / (time.perf_counter() - start)
    return results


# ---------------------------------------------------------------------------------------- worker


def peak_rss() -> int:
    """This process's peak resident memory in bytes. VmHWM, not ru_maxrss: Linux carries
    ru_maxrss over exec, so a child would report its parent's peak from before the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: best effort


def build_model(tiny: Path, size: str):
    """A Whisper with random weights (seed 0): the tiny one, or whisper-small's architecture."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_pretrained(tiny)
    if size == "small":
        for key, value in SMALL.items():
            setattr(config, key, value)
    torch.manual_seed(0)
    return WhisperForConditionalGeneration._from_config(config, attn_implementation="sdpa")


class Timer:
    """A TrainerCallback timing the steps after the warm-up ones."""

    def __new__(cls, warmup: int):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.start = None
                self.end = None

            def _now(self):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                return time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    self.start = self._now()
                self.end = self._now()

        return _Timer()


def run_setup(setup: str, opts) -> dict:
    """Train `setup` for warmup + steps and measure it (runs in its own process)."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    tiny = Path(opts.tiny)
    processor = load_processor(tiny, "sv", "transcribe")
    model = build_model(tiny, opts.model)
    total = opts.warmup + opts.steps
    out = Path(opts.work) / f"out-{setup}"
    quiet = dict(
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        logging_steps=10_000,
        logging_first_step=False,
        disable_tqdm=True,
        max_steps=total,
        warmup_steps=0,
    )
    if setup == "blog":
        import datasets

        model.config.forced_decoder_ids = None
        cuda = torch.cuda.is_available()
        args = Seq2SeqTrainingArguments(
            output_dir=str(out),
            per_device_train_batch_size=BATCH,
            gradient_accumulation_steps=1,
            learning_rate=1e-5,
            gradient_checkpointing=True,
            fp16=cuda,  # the blog's fp16; a CPU cannot run it
            optim="adamw_torch",
            use_cpu=not cuda,
            **quiet,
        )
        trainer = Seq2SeqTrainer(
            model=model,
            args=args,
            train_dataset=datasets.load_from_disk(opts.blog_dataset),
            data_collator=BlogCollator(processor, model.config.decoder_start_token_id),
            processing_class=processor.feature_extractor,
        )
        precision, workers, checkpointing = ("fp16" if cuda else "fp32"), 0, True
    else:
        default = train_trainer.use_checkpointing(TrainConfig(store=opts.store))
        checkpointing = default if setup == "project" else not default
        cfg = TrainConfig(
            store=opts.store,
            model=str(tiny),
            gradient_checkpointing=checkpointing,
            train_splits=("train",),
            eval_split="train",  # evaluation is off; the bench store has one split
            eval_max_samples=BATCH,
        )
        model = train_trainer.configure_model(model, cfg, "sv", "transcribe")
        precision = train_trainer.resolve_precision(cfg.precision)
        workers = train_trainer.default_workers()
        args = train_trainer.training_arguments(cfg, out, precision, workers, **quiet)
        store = FeatureStore(opts.store)
        train_set, eval_set, grouped = train_data.load_datasets(store, cfg, workers)
        trainer = train_trainer.make_trainer(
            model, args, train_set, eval_set, processor, grouped, cfg
        )
    timer = Timer(opts.warmup)
    trainer.add_callback(timer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = timer.end - timer.start
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
        memory_kind = "torch.cuda.max_memory_allocated"
    else:
        peak = peak_rss()
        memory_kind = "peak RSS of the training process (VmHWM)"
    return {
        "setup": setup,
        "samples_per_second": opts.steps * BATCH / seconds,
        "seconds": seconds,
        "steps": opts.steps,
        "batch": BATCH,
        "precision": precision,
        "gradient_checkpointing": checkpointing,
        "dataloader_workers": workers,
        "peak_memory_bytes": peak,
        "memory_kind": memory_kind,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# ------------------------------------------------------------------------------------------ main


def spawn(setup: str, opts, work: Path, env: dict) -> dict:
    result = work / f"{setup}.json"
    command = [
        sys.executable, __file__, "--worker", setup, "--work", str(work), "--tiny", opts.tiny,
        "--store", opts.store, "--blog-dataset", opts.blog_dataset, "--model", opts.model,
        "--steps", str(opts.steps), "--warmup", str(opts.warmup), "--result", str(result),
    ]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"setup {setup} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(result.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "small"), default=None,
                        help="tiny offline Whisper, or whisper-small's architecture (default: small "
                        "on CUDA, tiny on CPU)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when there is a GPU")  # fmt: skip
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps (default 30 GPU, 8 CPU)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (default 5 GPU, 2 CPU)"
    )
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma list of {SETUPS}")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    # internal: one setup in a child process
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--blog-dataset", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    opts = parser.parse_args()

    if opts.worker:
        Path(opts.result).write_text(json.dumps(run_setup(opts.worker, opts)))
        return 0

    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here")
    opts.model = opts.model or ("small" if device == "cuda" else "tiny")
    opts.steps = opts.steps or (30 if device == "cuda" else 8)
    opts.warmup = opts.warmup if opts.warmup is not None else (5 if device == "cuda" else 2)
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""

    from utils.models.tiny_random import build_tiny_whisper

    work = Path(opts.work or tempfile.mkdtemp(prefix="bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = max(BATCH * (opts.steps + opts.warmup), 1024)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine_line()}")
    print(f"device: {device}; model: {opts.model}; {rows} rows; batch {BATCH}; "
          f"{opts.warmup} warm-up + {opts.steps} timed steps")  # fmt: skip
    start = time.perf_counter()
    tiny = build_tiny_whisper(work / "tiny-whisper")
    sample = build_sample_store(work, tiny)
    store = replicate_store(sample, work / "store", rows)
    blog_dataset = build_blog_dataset(store, work)
    opts.tiny, opts.store, opts.blog_dataset = str(tiny), str(store), str(blog_dataset)
    print(f"data prepared in {time.perf_counter() - start:.0f} s: project store "
          f"{sum(f.stat().st_size for f in store.rglob('*') if f.is_file()) / 1e6:.0f} MB, blog "
          f"dataset {sum(f.stat().st_size for f in blog_dataset.rglob('*') if f.is_file()) / 1e6:.0f} MB")  # fmt: skip

    data = data_path_speed(store, blog_dataset, tiny, n=min(rows, 2048))
    print(
        "\ndata path alone (read + collate into padded [16, 80, 3000] float32 batches, 1 process):"
    )
    print(f"  project, random order, cold cache : {data['project']:8.0f} samples/s")
    print(
        f"  project, grouped order, no cache  : {data['project_grouped_uncached']:8.0f} samples/s"
    )
    print(f"  blog (datasets rows + pad)        : {data['blog']:8.0f} samples/s")
    floor = min(data["project"], data["project_grouped_uncached"])
    verdict = "meets" if floor >= TARGET_DATA_PATH else "MISSES"
    print(f"  -> {verdict} the {TARGET_DATA_PATH} samples/s target ({floor:.0f}); "
          f"{data['project'] / data['blog']:.1f}x the blog's")  # fmt: skip

    results = {}
    for setup in opts.setups.split(","):
        results[setup] = spawn(setup, opts, work, env)
    blog = results.get("blog")
    print(f"\ntraining ({opts.model}, {results[next(iter(results))]['parameters'] / 1e6:.1f} M parameters, "
          f"batch {BATCH}, {device}):")  # fmt: skip
    print(f"  {'setup':<16} {'samples/s':>10} {'peak memory':>12} {'MB/sample':>10} {'precision':>9} "
          f"{'ckpt':>5} {'workers':>7}")  # fmt: skip
    for r in results.values():
        print(f"  {r['setup']:<16} {r['samples_per_second']:10.2f} {r['peak_memory_bytes'] / 2**20:10.0f} MB "
              f"{r['peak_memory_bytes'] / 2**20 / BATCH:10.1f} {r['precision']:>9} "
              f"{'yes' if r['gradient_checkpointing'] else 'no':>5} {r['dataloader_workers']:>7}")  # fmt: skip
    if blog:
        for setup, r in results.items():
            if setup == "blog":
                continue
            speed = r["samples_per_second"] / blog["samples_per_second"]
            memory = r["peak_memory_bytes"] / blog["peak_memory_bytes"]
            print(f"  {setup} / blog: {speed:.2f}x samples/s, {memory:.2f}x memory per sample "
                  f"(target on GPU: >= {TARGET_SPEEDUP}x at <= 1.0x memory)")  # fmt: skip
    print(f"  memory: {next(iter(results.values()))['memory_kind']}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(
            {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine_line(),
             "device": device, "model": opts.model, "data_path": data, "training": results},
            indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
