#!/usr/bin/env python3
"""How fast ingest(embeddings=...) turns numpy rows into Examples: the packed-bytes merge the
client uses against the obvious `repeated_field.extend(row.tolist())`, in the same run.

    python3 -m venv --system-site-packages --without-pip /tmp/venv &&
      /tmp/venv/bin/python -m pip install --isolated --no-index client/python &&
      /tmp/venv/bin/python client/python/bench/vectors_bench.py [--pairs 2000] [--dim 4096]

Prints pairs per second of each and their ratio (conversion only, no network): the part of
an ingest that the client's own CPU spends per record.
"""
import argparse
import time

import numpy as np

from curation_client import to_example
from curation_client.vectors import Vectors


def packed(vectors, records):
    for i, record in enumerate(records):
        example = to_example(record)
        vectors.attach(example, i)


def tolist(array, records):
    for i, record in enumerate(records):
        example = to_example(record)
        example.pair.chosen_embedding.extend(array[i, 0].tolist())
        example.pair.rejected_embedding.extend(array[i, 1].tolist())


def best_of(runs, f):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float16):
        array = rng.standard_normal((args.pairs, 2, args.dim)).astype(dtype)
        records = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(args.pairs)]
        vectors = Vectors(array, dataset="bench", pairs=True, dim=args.dim)
        # Same bytes either way: the merge is the wire form of the same repeated floats.
        a, b = to_example(records[0]), to_example(records[0])
        vectors.attach(a, 0)
        b.pair.chosen_embedding.extend(array[0, 0].tolist())
        b.pair.rejected_embedding.extend(array[0, 1].tolist())
        assert a.SerializeToString() == b.SerializeToString()
        t_packed = best_of(args.runs, lambda: packed(vectors, records))
        t_tolist = best_of(args.runs, lambda: tolist(array, records))
        print(f"{np.dtype(dtype).name} {args.pairs} pairs x 2 x {args.dim}: packed "
              f"{args.pairs / t_packed:,.0f} pairs/s, extend(tolist) "
              f"{args.pairs / t_tolist:,.0f} pairs/s, ratio {t_tolist / t_packed:.1f}x")


if __name__ == "__main__":
    main()
