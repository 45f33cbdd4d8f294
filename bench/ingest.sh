#!/usr/bin/env bash
# Ingest throughput beside the embedder's, in one run on the same file:
#   bench/ingest.sh [BUILD_DIR] [FILE] [ROUNDS]
# Each round runs `curation-embed FILE` (the built-in embedder alone on all cores; reading
# the file is not timed), then `curation ingest FILE` into a fresh built-in-embedding dataset
# on a fresh curation-server (loopback, its own RocksDB dir, durable writes as deployed), and
# prints both rates in pairs/s and their ratio ingest/embed. The ingest time is the CLI's
# wall time: reading, parsing, sending, embedding, writing and the final fsync.
#
# The machine may be busy: wall-time rates then depend on how many runnable threads each
# side has and on their nice values (the server embeds at --ingest-nice 10). So each round
# also prints CPU-seconds per 1,000 pairs: the embedder's (its own count, embedding only) and
# the ingest's (the CLI's plus the server's, over the ingest), and their ratio, the
# throughput ratio an otherwise idle machine would show if the ingest kept every core busy.
#
# Environment: SERVER_ARGS="..." extra server flags (e.g. --ingest_threads=2);
# BASELINE=DIR also runs DIR's curation and curation-server on the same file in each round
# (against BUILD_DIR's curation-embed), for a before/after in one run.
set -euo pipefail
BUILD=${1:-build}
FILE=${2:-../shared/data/alpaca-eval-dev-pairs.jsonl.gz}
ROUNDS=${3:-1}
TMP=$(mktemp -d /tmp/curation-ingest-bench.XXXXXX)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
TICK=$(getconf CLK_TCK)

now() { date +%s.%N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ingest BIN_DIR LABEL: one ingest of FILE on a fresh server; prints the round's line.
ingest() {
  local bin=$1 label=$2
  rm -rf "$TMP/db" "$TMP/port"
  # shellcheck disable=SC2086
  "$bin/curation-server" --listen 127.0.0.1:0 --data-dir "$TMP/db" --port-file "$TMP/port" \
    --auth=false ${SERVER_ARGS:-} 2>"$TMP/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 600); do [ -s "$TMP/port" ] && break; sleep 0.1; done
  [ -s "$TMP/port" ] || { cat "$TMP/server.log" >&2; exit 1; }
  local addr=127.0.0.1:$(cat "$TMP/port")
  "$bin/curation" --server "$addr" datasets create bench >/dev/null
  local server_before start end server_after
  server_before=$(cpu_ticks "$SERVER_PID")
  start=$(now)
  /usr/bin/time -f "%U %S" -o "$TMP/cli.time" \
    "$bin/curation" --server "$addr" ingest bench "$FILE" >"$TMP/ingest.out" 2>"$TMP/ingest.err" ||
    { cat "$TMP/ingest.err" >&2; exit 1; }
  end=$(now)
  server_after=$(cpu_ticks "$SERVER_PID")
  kill "$SERVER_PID"
  wait "$SERVER_PID" || { echo "curation-server exited $?" >&2; cat "$TMP/server.log" >&2; exit 1; }
  SERVER_PID=
  local accepted ingest_rate ingest_cpu
  accepted=$(sed -nE 's/.*: ([0-9]+) accepted.*/\1/p' "$TMP/ingest.out")
  ingest_rate=$(awk -v n="$pairs" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }')
  ingest_cpu=$(awk -v t="$TICK" -v a="$server_before" -v b="$server_after" \
    '{ printf "%.3f", $1 + $2 + (b - a) / t }' "$TMP/cli.time")
  awk -v label="$label" -v n="$pairs" -v acc="$accepted" -v er="$embed_rate" -v ir="$ingest_rate" \
      -v ec="$embed_cpu" -v ic="$ingest_cpu" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
    printf "  %-8s %d pairs (%d accepted): embed %d pairs/s, ingest %d pairs/s, ingest/embed %.3f;" \
           " CPU-s per 1k pairs: embed %.3f, ingest %.3f, embed/ingest %.3f; loadavg %s\n",
           label, n, acc, er, ir, ir / er, 1000 * ec / n, 1000 * ic / n, ec / ic, load }'
}

for round in $(seq 1 "$ROUNDS"); do
  "$BUILD/bin/curation-embed" "$FILE" "$TMP/embed" >"$TMP/embed.out"
  rm -f "$TMP/embed.f32"
  embed_rate=$(sed -nE 's/.* ([0-9.]+) pairs\/s.*/\1/p' "$TMP/embed.out")
  embed_cpu=$(sed -nE 's/^cpu: ([0-9.]+) CPU-seconds.*/\1/p' "$TMP/embed.out")
  pairs=$(sed -nE 's/^[^:]*: ([0-9]+) pairs.*/\1/p' "$TMP/embed.out")
  echo "round $round:"
  ingest "$(cd "$BUILD/bin" && pwd)" "this"
  if [ -n "${BASELINE:-}" ]; then ingest "$(cd "$BASELINE/bin" && pwd)" "baseline"; fi
done
