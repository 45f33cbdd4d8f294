#!/usr/bin/env python3
"""The cost model of distributed selection (bench/COST_MODEL.md) as formulas, evaluated.

  cost_model.py                       the headline table at N = 100M pairs, P = 16, d = 256
  cost_model.py --measured OUT.txt    predicted vs measured rounds and bytes, from the output of
                                      curation-proxy --partitions P (its JSON lines)

Bytes are counted as selection/distributed.cc counts them (DistributedResult): 8 per row
number, score, key or double, 4 per float32 value, 16 for a summary's or statistics' header,
17 or 25 for a request without vectors. Python 3, no dependencies."""
import argparse, json, math, sys

INIT_SAMPLE = 16384  # MixtureOptions::init_sample_rows


def quotas(weights, k):
    """Largest-remainder split of k in proportion to weights (herding's per-partition k)."""
    total = sum(weights)
    exact = [k * w / total for w in weights]
    q = [math.floor(e) for e in exact]
    for i in sorted(range(len(q)), key=lambda i: (-(exact[i] - q[i]), i))[: k - sum(q)]:
        q[i] += 1
    return q


def predict(method, n, d, k, K=2, iters=0, m=INIT_SAMPLE, concat=True, kept=None, refills=0):
    """Rounds, bytes from and to the partitions for one run. n: rows per partition; kept: the
    rows each partition's dedup keeps (dedup only; default all); iters: EM iterations on all
    rows (isa); refills: dedup's extra rounds when the cross-partition filter left fewer than k
    (each asks the partitions that may hold more for twice as many, re-sent whole)."""
    P, N = len(n), sum(n)
    live = [x for x in n if x > 0]
    rounds, frm, to = 1, P * (24 + 8 * d), 0  # every method starts with Summarize
    if method == "random":
        rounds += 1
        to += 17 * P
        frm += 24 * sum(min(k, x) for x in live)
    elif method == "dedup":
        kept = kept or n
        asked = []
        for x in kept:
            share = -(-k * x // sum(kept))
            asked.append(min(x, share + share // 4 + 8))
        want = [x > 0 for x in kept]
        for _ in range(1 + refills):
            rounds += 1
            for p, x in enumerate(kept):
                if want[p]:
                    to += 25
                    frm += min(asked[p], x) * (24 + 4 * d)
            want = [want[p] and asked[p] < x for p, x in enumerate(kept)]
            asked = [min(x, 2 * a) if w else a for x, a, w in zip(kept, asked, want)]
    elif method == "herding":
        dh = 2 * d if concat else d  # [chosen, rejected] rows
        frm = P * (24 + 8 * dh)
        q = quotas(n, k)
        rounds += 1
        to += sum(25 + 8 * dh for x in q if x > 0)
        frm += k * (24 + 4 * dh)
    elif method == "herding_exact":
        dh = 2 * d if concat else d
        return k, k * len(live) * (24 + 4 * dh), k * len(live) * 8 * dh
    elif method in ("facility_location", "kcenter"):
        rounds += 1
        to += 25 * len(live)
        frm += sum(min(k, x) for x in live) * (24 + 4 * d)
    elif method == "isa":
        params_em = 8 * (1 + K + 2 * K * d + d)  # weights, means, variances, center
        params_tail = 8 * (1 + K + 2 * K * d)  # no center
        m = min(N, m)
        rounds += 1 + iters + 1
        to += 17 * P + iters * len(live) * params_em + len(live) * (params_tail + 8)
        frm += sum(min(m, x) for x in live) * (24 + 4 * d)
        frm += iters * len(live) * (16 + 8 * (K + 2 * K * d))
        frm += len(live) * 24 + 24 * sum(min(k, x) for x in live)
    else:
        raise ValueError(method)
    return rounds, frm, to


def human(b):
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def headline(N, P, d, frac, K, iters):
    k = int(N * frac)
    n = [N // P + (1 if i < N % P else 0) for i in range(P)]
    print(f"N = {N:,} pairs, P = {P}, d = {d} (herding rows 2d = {2 * d}), k = {k:,}, "
          f"K = {K}, EM iterations = {iters}\n")
    print("| method | rounds | bytes from partitions | bytes to partitions |")
    print("|---|---|---|---|")
    for method in ("random", "isa", "herding", "herding_exact", "facility_location", "kcenter",
                   "dedup"):
        r, f, t = predict(method, n, d, k, K, iters)
        print(f"| {method} | {r:,} | {human(f)} | {human(t)} |")


def compare(path):
    lines = [json.loads(l) for l in open(path) if l.startswith("{")]
    head = next(l for l in lines if "partition_pairs" in l)
    n, d = head["partition_pairs"], head["dim"]
    print(f"Partitions {n} (P = {len(n)}), d = {d}\n")
    print("| method | k | rounds pred / meas | bytes from pred / meas | bytes to pred / meas |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for l in lines:
        if "method" not in l:
            continue
        r, f, t = predict(l["method"], n, d, l["pairs"], iters=l.get("iterations", 0),
                          kept=l.get("partition_kept"),
                          refills=max(0, l["rounds"] - 2) if l["method"] == "dedup" else 0)
        mr, mf, mt = l["rounds"], l["bytes_from_partitions"], l["bytes_to_partitions"]
        tag = " (modeled)" if l.get("modeled") else ""
        print(f"| {l['method']}{tag} | {l['pairs']} | {r} / {mr} | {f:,} / {mf:,} | {t:,} / {mt:,} |")
        if not l.get("modeled"):
            worst = max(worst, abs(f - mf) / max(mf, 1), abs(t - mt) / max(mt, 1),
                        abs(r - mr) / max(mr, 1))
    print(f"\nLargest relative error, measured runs: {worst:.2%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--measured")
    ap.add_argument("--pairs", type=int, default=100_000_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--budget", type=float, default=0.01)
    ap.add_argument("--components", type=int, default=2)
    ap.add_argument("--em-iterations", type=int, default=10)
    a = ap.parse_args()
    if a.measured:
        compare(a.measured)
    else:
        headline(a.pairs, a.partitions, a.dim, a.budget, a.components, a.em_iterations)
