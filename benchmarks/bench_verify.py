"""What it costs to verify a store before training: `FeatureStore.verify()` (every shard's sha256,
size, parquet footer and row count, and no unlisted shard) against one pass of reading the same
store the way training does (every row's features rebuilt into its padded window), which one
epoch costs at the least.

The store is the Swedish sample's rows repeated under new ids (as in bench_training.py), in shards
of 1,000 rows; its files are read once before timing so both sides start from the page cache.

    python benchmarks/bench_verify.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_training import build_sample_store, replicate_store  # noqa: E402
from benchmarks.machine import machine  # noqa: E402
from utils.store import FeatureStore  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000)
    args = p.parse_args()
    from utils.models.tiny_random import build_tiny_whisper

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = build_tiny_whisper(work / "tiny")
        store_dir = replicate_store(build_sample_store(work, tiny), work / "store", args.rows)
        store = FeatureStore(store_dir)
        for f in store.files():  # warm the page cache for both sides
            f.read_bytes()
        started = time.perf_counter()
        figures = store.verify()
        verify_s = time.perf_counter() - started
        dataset = store.dataset("train")
        started = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]["features"]
        read_s = time.perf_counter() - started
    print(machine())
    print(
        f"store: {figures['rows']:,} rows in {figures['shards']} shards, {figures['bytes'] / 1e6:,.0f} MB"
    )
    print(f"verify():          {verify_s:6.2f} s  ({figures['bytes'] / 1e6 / verify_s:,.0f} MB/s)")
    print(f"one reading pass:  {read_s:6.2f} s  ({args.rows / read_s:,.0f} rows/s)")
    print(f"verify / one pass: {verify_s / read_s:.3f}x")
    print("command: python benchmarks/bench_verify.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
