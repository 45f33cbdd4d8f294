#!/usr/bin/env python3
"""curation-proxy --partitions 3 on a small synthetic matrix: every method's one-node and
distributed rows are scored, random selects exactly one node's rows over the partitions (the
keyed-hash order), and the limits on --partitions are enforced. Only the table's structure and
the exact equalities decide; the accuracies themselves are printed, not judged.

Usage: proxy_partitions_test.py CURATION_PROXY"""
import json, os, random, shutil, struct, subprocess, sys, tempfile

proxy = sys.argv[1]
PAIRS, DIM = 1500, 16
METHODS = ["random", "isa", "herding", "facility_location", "kcenter", "dedup"]
BUDGETS = [0.01, 0.02, 0.05, 0.1]


def fail(message, out=""):
    print(out)
    sys.exit("FAIL: " + message)


def matrix(path):
    """embed_lsa.py's layout: all chosen rows, then all rejected rows. Pairs come from a few
    clusters, chosen shifted along a preference direction; every 25th pair repeats an earlier
    one exactly, so dedup has near-duplicates to drop, across partitions as within them."""
    rng = random.Random(7)
    centres = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(6)]
    pref = [rng.gauss(0, 0.08) for _ in range(DIM)]
    chosen, rejected = [], []
    for i in range(PAIRS):
        if i % 25 == 24:
            j = rng.randrange(i)
            chosen.append(chosen[j])
            rejected.append(rejected[j])
            continue
        c = centres[rng.randrange(len(centres))]
        base = [x + rng.gauss(0, 0.5) for x in c]
        chosen.append([b + p + rng.gauss(0, 0.3) for b, p in zip(base, pref)])
        rejected.append([b - p + rng.gauss(0, 0.3) for b, p in zip(base, pref)])
    with open(path, "wb") as f:
        for row in chosen + rejected:
            f.write(struct.pack(f"{DIM}f", *row))


def run(*args):
    return subprocess.run([proxy, *args], capture_output=True, text=True, timeout=300)


tmp = tempfile.mkdtemp(prefix="proxy-partitions-")
try:
    path = os.path.join(tmp, "pairs.f32")
    matrix(path)
    common = [path, str(DIM), "--train-pairs", "1000", "--test-pairs", "300", "--seeds", "3"]

    r = run(*common, "--partitions", "3")
    print(r.stdout)
    print(r.stderr, file=sys.stderr)
    if r.returncode != 0:
        fail(f"curation-proxy --partitions 3 exited {r.returncode}")
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    header = [l for l in lines if "partition_pairs" in l]
    if len(header) != 1 or len(header[0]["partition_pairs"]) != 3:
        fail("no line giving the 3 partitions' sizes", r.stdout)
    sizes = header[0]["partition_pairs"]
    if sum(sizes) != header[0]["pool_pairs"] or min(sizes) == 0:
        fail(f"partition sizes {sizes} do not split the pool of {header[0]['pool_pairs']}")
    rows = {(l["method"], l["budget"]): l for l in lines if "method" in l}
    for m in METHODS + ["herding_exact"]:
        for b in BUDGETS:
            l = rows.get((m, b))
            if l is None:
                fail(f"no JSON line for {m} at {b}", r.stdout)
            if l["partitions"] != 3 or l["pairs"] != int(b * 2 * 1000) // 2:
                fail(f"{m} at {b}: wrong partitions or pairs: {l}")
            if not (0 <= l["same_rows"] <= l["pairs"]) or l["rounds"] < 1:
                fail(f"{m} at {b}: same_rows or rounds out of range: {l}")
            if l["bytes_from_partitions"] <= 0:
                fail(f"{m} at {b}: the partitions sent nothing: {l}")
            for key in ("one_node", "distributed"):
                if not 0 <= l[key] <= 1:
                    fail(f"{m} at {b}: {key} accuracy out of [0, 1]: {l}")
            if l["modeled"] != (m == "herding_exact"):
                fail(f"{m} at {b}: only herding_exact is priced rather than run: {l}")
        # The exact forms: the same rows as one node, so the same proxy score.
        for m in ("random", "herding_exact"):
            l = rows[(m, b)]
            if l["same_rows"] != l["pairs"] or l["distributed"] != l["one_node"]:
                fail(f"{m} at {b}: distributed rows differ from one node's: {l}")
        # Exact herding takes one round per pick; the one-round form must take fewer.
        if rows[("herding_exact", b)]["rounds"] != rows[("herding", b)]["pairs"]:
            fail(f"herding_exact at {b} is not priced at one round per pick")
        if rows[("herding", b)]["rounds"] >= rows[("herding_exact", b)]["rounds"]:
            fail(f"one-round herding at {b} took as many rounds as the exact form")
    table = [l for l in r.stdout.splitlines() if l.startswith("| ")]
    for m in METHODS + ["herding_exact"]:
        if sum(1 for l in table if l.startswith(f"| {m} |")) != len(BUDGETS):
            fail(f"the Markdown table lacks {m}'s {len(BUDGETS)} lines", r.stdout)

    # On one partition, the two-round methods' candidates are one node's k rows, and the second
    # round can only reorder them: the same set as one node, as for random.
    one = run(*common, "--partitions", "1", "--budgets", "0.05",
              "--methods", "random,facility_location,kcenter")
    if one.returncode != 0:
        fail(f"--partitions 1 exited {one.returncode}", one.stdout + one.stderr)
    for l in (json.loads(x) for x in one.stdout.splitlines() if x.startswith("{\"method")):
        if l["same_rows"] != l["pairs"]:
            fail(f"{l['method']} on one partition selects other rows than one node: {l}")

    # Limits: --partitions in [1, 64], known methods only.
    for bad, expect in [("0", "--partitions"), ("65", "--partitions")]:
        e = run(*common, "--partitions", bad)
        if e.returncode == 0 or expect not in e.stderr:
            fail(f"--partitions {bad} was not refused naming {expect}: {e.stderr}")
    e = run(*common, "--partitions", "3", "--methods", "random,bogus")
    if e.returncode == 0 or "bogus" not in e.stderr:
        fail(f"an unknown method was not refused by name: {e.stderr}")
    print("PASS")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
