#!/usr/bin/env bash
# Runs curation-bench's ISA beside the scikit-learn anchor (same machine, same run), then the
# scaling rows of bench/README.md. Matrices are made in $WORK (default /tmp/curation-bench)
# from ../shared/data when missing; the alpaca data are CC BY-NC, never copy them into the repo.
#
#   bench/run.sh [BUILD_DIR] [anchor|scaling|all]     (default: build, all)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
WHAT=${2:-all}
BENCH="$BUILD/bin/curation-bench"
SHARED=${SHARED:-../shared}
WORK=${WORK:-/tmp/curation-bench}
PY=/usr/bin/python3
PAIRS="$SHARED/data/alpaca-eval-dev-pairs.jsonl.gz"
mkdir -p "$WORK"

[ -x "$BENCH" ] || { echo "no $BENCH: build the curation-bench target first" >&2; exit 1; }

# LSA embeddings (TF-IDF + SVD, as the anchor's users make them): 111,450 rows.
lsa() {
  [ -f "$WORK/alpaca$1.f32" ] || "$PY" "$SHARED/tools/embed_lsa.py" "$PAIRS" "$WORK/alpaca$1" --dim "$1"
}

note() { echo "== $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"; }

anchor() {
  lsa 256
  for cov in diag full; do
    note "ours, $cov, before the anchor"
    "$BENCH" isa --matrix "$WORK/alpaca256.f32" --dim 256 --budget 0.1 --covariance "$cov" \
      --out "$WORK/ours_$cov.ids"
    note "sklearn anchor, $cov"
    /usr/bin/time -f "anchor wall_s=%e user_s=%U sys_s=%S peak_rss_mb=%M(KB)" \
      "$PY" "$SHARED/tools/sklearn_isa_anchor.py" "$WORK/alpaca256.f32" 256 0.1 "$cov" \
      "$WORK/anchor_$cov.ids"
    note "ours, $cov, after the anchor"
    "$BENCH" isa --matrix "$WORK/alpaca256.f32" --dim 256 --budget 0.1 --covariance "$cov"
    # How many selected rows the two share (different local optima select differently).
    echo "overlap with the anchor: $(sort "$WORK/ours_$cov.ids" "$WORK/anchor_$cov.ids" | uniq -d | wc -l) of $(wc -l < "$WORK/anchor_$cov.ids")"
  done
}

scaling() {
  lsa 256
  lsa 1024
  # The built-in embedder's 4,096-d vectors (hashed n-grams): 1.8 GB.
  [ -f "$WORK/hashed4096.f32" ] ||
    "$BUILD/bin/curation-embed" "$PAIRS" "$WORK/hashed4096" --dim 4096
  note "N scaling, d = 256 (1M rows: the 111,450 rows repeated, noise sd 0.001)"
  for rows in 10000 100000 1000000; do
    for cov in diag full; do
      "$BENCH" isa --matrix "$WORK/alpaca256.f32" --dim 256 --budget 0.1 --covariance "$cov" \
        --rows "$rows"
    done
  done
  note "N scaling without the warm start (scikit-learn's recipe: k-means and EM on all rows)"
  for rows in 10000 100000 1000000; do
    "$BENCH" isa --matrix "$WORK/alpaca256.f32" --dim 256 --budget 0.1 --covariance diag \
      --rows "$rows" --init-sample 0
  done
  note "d scaling, N = 111,450"
  "$BENCH" isa --matrix "$WORK/alpaca1024.f32" --dim 1024 --budget 0.1 --covariance diag
  "$BENCH" isa --matrix "$WORK/alpaca1024.f32" --dim 1024 --budget 0.1 --covariance full
  "$BENCH" isa --matrix "$WORK/hashed4096.f32" --dim 4096 --budget 0.1 --covariance diag
  "$BENCH" isa --matrix "$WORK/hashed4096.f32" --dim 4096 --budget 0.1 --covariance diag \
    --pca-dim 256
  "$BENCH" isa --matrix "$WORK/hashed4096.f32" --dim 4096 --budget 0.1 --covariance full \
    --pca-dim 256
}

case "$WHAT" in
  anchor) anchor ;;
  scaling) scaling ;;
  all) anchor; scaling ;;
  *) echo "usage: bench/run.sh [BUILD_DIR] [anchor|scaling|all]" >&2; exit 2 ;;
esac
