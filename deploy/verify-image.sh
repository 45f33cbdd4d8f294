#!/usr/bin/env bash
# Proves that the Dockerfile builds and that the image runs, on a machine with no container
# engine and no image registry:
#   1. makes debian:bookworm and debian:bookworm-slim with debootstrap from Debian's archive
#      (the archive this machine's apt uses) and imports them into podman under those names;
#   2. builds the image with `podman build --isolation=chroot`;
#   3. exports the image's filesystem and starts curation-server from it with chroot, as the
#      image's non-root user, on a loopback port;
#   4. checks the image's HEALTHCHECK command, the metrics endpoint, and one ingest, select
#      and export through the image's own CLI with a real admin and writer token, then
#      SIGTERM and a clean exit.
#
# Usage (as root): deploy/verify-image.sh [--if-requested]
#   --if-requested  exit 77 (ctest's "skipped") unless CURATION_VERIFY_IMAGE=1: the whole run
#                   takes 20-60 minutes on two busy cores (about 10 fewer once the base
#                   images exist), too slow for every CI run.
# Environment: VERIFY_WORKDIR (default /var/tmp/curation-verify-image; base images are kept
#   there and in podman between runs), REBUILD_BASE=1 to debootstrap again, DEBIAN_MIRROR to
#   override the archive, IMAGE (default localhost/curation:verify), JOBS (build parallelism).
set -euo pipefail

if [ "${1:-}" = "--if-requested" ] && [ "${CURATION_VERIFY_IMAGE:-}" != "1" ]; then
  echo "verify-image: skipped (set CURATION_VERIFY_IMAGE=1 to run it)"
  exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "verify-image: needs root (debootstrap, chroot and mounts)" >&2
  exit 1
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${VERIFY_WORKDIR:-/var/tmp/curation-verify-image}"
image="${IMAGE:-localhost/curation:verify}"
jobs="${JOBS:-$(nproc)}"
sample="$repo/tests/data/hh-rlhf-harmless-sample.jsonl.gz"
started=$(date +%s)
mkdir -p "$work"

step() { printf '[verify-image %4ss] %s\n' "$(($(date +%s) - started))" "$*"; }
fail() {
  printf '[verify-image] FAIL: %s\n' "$*" >&2
  exit 1
}

missing=()
for p in podman buildah debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
fi

# The mirror this machine already trusts, so that the script names no host of its own.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || fail "no Debian mirror found in apt's sources; set DEBIAN_MIRROR"

# Makes one base image. $1: image name, $2: debootstrap variant ("" for the default).
make_base() {
  local name="$1" variant="$2" rootfs="$work/rootfs-${1//[:\/]/-}"
  if podman image exists "$name" && [ "${REBUILD_BASE:-}" != "1" ]; then
    step "base image $name: already imported (REBUILD_BASE=1 to remake it)"
    return
  fi
  step "base image $name: debootstrap ${variant:-default variant} bookworm"
  rm -rf "$rootfs"
  debootstrap ${variant:+--variant="$variant"} bookworm "$rootfs" "$mirror" \
    >"$work/debootstrap-${name//[:\/]/-}.log" 2>&1 ||
    fail "debootstrap failed, see $work/debootstrap-${name//[:\/]/-}.log"
  # The official images read bookworm, its updates and the security archive; so does this
  # machine, so its sources (or, failing that, debootstrap's one line) are what we keep.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    rm -f "$rootfs/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
  fi
  if [ "$variant" = "minbase" ]; then
    # As debian:*-slim: documentation is never installed.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    rm -rf "$rootfs/usr/share/man"/* "$rootfs/usr/share/info"/*
  fi
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar --numeric-owner -C "$rootfs" -c . |
    podman import --change 'CMD ["bash"]' - "$name" >>"$work/podman.log" 2>&1
  # Short names resolve to docker.io/library; tag there too so no pull is ever attempted.
  podman tag "$name" "docker.io/library/$name"
  rm -rf "$rootfs"
  step "base image $name: imported ($(podman image inspect --format '{{.Size}}' "$name") bytes)"
}

make_base debian:bookworm ""
make_base debian:bookworm-slim minbase

step "podman build --isolation=chroot (JOBS=$jobs); log in $work/build.log"
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
if ! podman build --isolation=chroot --format docker --pull=never \
  --build-arg JOBS="$jobs" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$image" -f "$repo/Dockerfile" "$repo" >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  fail "podman build failed"
fi
step "built $image: $(podman image inspect --format '{{.Size}}' "$image") bytes"

inspect() { podman image inspect --format "$1" "$image"; }
user=$(inspect '{{.Config.User}}')
entrypoint=$(inspect '{{json .Config.Entrypoint}}')
healthcheck=$(inspect '{{json .Config.Healthcheck.Test}}')
echo "  user:        $user"
echo "  entrypoint:  $entrypoint"
echo "  cmd:         $(inspect '{{json .Config.Cmd}}')"
echo "  ports:       $(inspect '{{json .Config.ExposedPorts}}')"
echo "  volumes:     $(inspect '{{json .Config.Volumes}}')"
echo "  healthcheck: $healthcheck"
echo "  labels:      $(inspect '{{json .Config.Labels}}')"
[ "$user" = "10001:10001" ] || fail "image user is '$user', expected 10001:10001"
[ "$entrypoint" = '["curation-server"]' ] || fail "unexpected entrypoint $entrypoint"
[ "$healthcheck" != "null" ] || fail "the image has no HEALTHCHECK (built as OCI?)"

root="$work/rootfs-image"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  for m in proc dev; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  [ -n "${container:-}" ] && podman rm -f "$container" >/dev/null 2>&1
  true
}
trap cleanup EXIT
rm -rf "$root" && mkdir -p "$root"
# podman create also tries to arm the HEALTHCHECK's systemd timer, which this machine lacks;
# its complaint goes to the log with the rest of podman's chatter.
container=$(podman create "$image" 2>>"$work/podman.log")
podman export "$container" | tar -x --numeric-owner -C "$root"
podman rm "$container" >/dev/null 2>>"$work/podman.log" && container=""
step "exported the image's filesystem: $(du -sh "$root" | cut -f1)"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
mkdir -p "$root/run" "$root/tmp"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/run/admin-token"
chown 10001:10001 "$root/run/admin-token" && chmod 0400 "$root/run/admin-token"
cp "$sample" "$root/tmp/sample.jsonl.gz" && chmod 0444 "$root/tmp/sample.jsonl.gz"
# The image's own environment (PATH, CURATION_SERVER), as a container runtime would set it.
mapfile -t image_env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | sed '/^$/d')
in_image() { chroot --userspec=10001:10001 "$root" /usr/bin/env -i "${image_env[@]}" \
  HOME=/var/lib/curation CURATION_SERVER="127.0.0.1:$port" "$@"; }

step "starting curation-server from the image as uid 10001 on 127.0.0.1:$port"
# Not through in_image: a function in the background runs in a subshell, and $! must be
# the server itself (chroot and env exec it) for SIGTERM to reach it.
chroot --userspec=10001:10001 "$root" /usr/bin/env -i "${image_env[@]}" HOME=/var/lib/curation \
  curation-server --listen="127.0.0.1:$port" --data-dir=/var/lib/curation \
  --metrics-listen="127.0.0.1:$metrics_port" --admin-token-file=/run/admin-token \
  --grace-period-seconds=5 2>"$work/server.log" &
server_pid=$!

# The HEALTHCHECK exactly as the image declares it (["CMD", "curation", "health"]).
mapfile -t hc < <(/usr/bin/python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])[1:]))' "$healthcheck")
# Until the CLI has `curation health`, health is asked from this machine with grpcio (raw
# grpc.health.v1 bytes: an empty request; the reply's field 1 is the status, 1 = SERVING).
host_health() {
  /usr/bin/python3 - "127.0.0.1:$port" <<'EOF'
import sys, grpc
check = grpc.insecure_channel(sys.argv[1]).unary_unary("/grpc.health.v1.Health/Check")
try:
    reply = check(b"", timeout=2)
except grpc.RpcError:
    sys.exit(1)
sys.exit(0 if reply == b"\x08\x01" else 1)
EOF
}
cli_has_health=1
usage=$(in_image curation help 2>&1 || true)
grep -qw health <<<"$usage" || cli_has_health=0
healthy=0
for _ in $(seq 1 120); do
  kill -0 "$server_pid" 2>/dev/null || { tail -20 "$work/server.log" >&2; fail "the server exited"; }
  if [ "$cli_has_health" = 1 ]; then
    in_image "${hc[@]}" >/dev/null 2>&1 && { healthy=1; break; }
  else
    host_health && { healthy=1; break; }
  fi
  sleep 0.5
done
[ "$healthy" = 1 ] || { tail -20 "$work/server.log" >&2; fail "never SERVING"; }
if [ "$cli_has_health" = 1 ]; then
  step "health: SERVING, by the image's HEALTHCHECK command: ${hc[*]}"
else
  step "health: SERVING, asked with grpcio from the host; NOT CHECKED: the image's HEALTHCHECK" \
    "(${hc[*]}) because this CLI has no 'health' command yet"
fi

admin=$(cat "$root/run/admin-token")
in_image curation --token "$admin" admin tenants create verify >/dev/null ||
  fail "admin tenants create"
writer=$(in_image curation --token "$admin" admin tokens create --role writer --tenant verify \
  2>/dev/null) ||
  fail "admin tokens create"
step "created tenant 'verify' and a writer token with the admin token"
in_image curation --token "$writer" datasets create hh >/dev/null || fail "datasets create"
in_image curation --token "$writer" ingest hh /tmp/sample.jsonl.gz >"$work/ingest.out" 2>&1 ||
  { cat "$work/ingest.out" >&2; fail "ingest"; }
grep -E '^(ingested|  rejected)' "$work/ingest.out" | sed 's/^/  /' || true
in_image curation --token "$writer" --json select hh --budget 10% --method isa >"$work/select.json" ||
  fail "select"
selection=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' \
  "$work/select.json") || fail "select printed no selection id"
in_image curation --token "$writer" export "$selection" -o /tmp/subset.jsonl >/dev/null 2>&1 ||
  fail "export"
exported=$(wc -l <"$root/tmp/subset.jsonl")
step "ingested the 500-pair sample, selected 10% with ISA ($selection), exported $exported records"
[ "$exported" = 50 ] || fail "expected 50 exported records"
unauth=$(in_image curation datasets list 2>&1) && fail "a call without a token succeeded"
echo "  without a token: $(echo "$unauth" | head -1)"

/usr/bin/python3 - "$metrics_port" <<'EOF' || fail "metrics"
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
line = next(l for l in body.splitlines()
            if l.startswith('curation_ingested_records_total{outcome="accepted"}'))
print("  metrics:", line)
EOF

step "SIGTERM"
kill -TERM "$server_pid"
code=0
wait "$server_pid" || code=$?
server_pid=""
[ "$code" = 0 ] || { tail -20 "$work/server.log" >&2; fail "the server exited with $code"; }
echo "  last log line: $(tail -1 "$work/server.log")"
step "PASS: the image builds, runs as uid 10001 from its own filesystem, serves, and stops cleanly"
