#!/usr/bin/env python3
"""curation-load against a real server with authentication on: the tool must run through both
phases and find every record and selection the server acknowledged. Its latency figures are
printed for the log but decide nothing: they depend on the machine.

Usage: load_test.py CURATION_SERVER CURATION_LOAD [SECONDS_PER_PHASE]"""
import os, shutil, subprocess, sys, tempfile

from local_server import LocalServer

server_bin, load_bin = sys.argv[1:3]
seconds = sys.argv[3] if len(sys.argv) > 3 else "5"

tmp = tempfile.mkdtemp(prefix="curation-load-")
server = None
try:
    server = LocalServer(server_bin, tmp, "load-test-admin-token-0123456789")
    address, token_file = server.address, server.token_file

    # A small load: the point is the end-to-end check, not the figures.
    r = subprocess.run(
        [load_bin, "--server", address, "--admin-token-file", token_file, "--seconds", seconds,
         "--clients", "16", "--bulk-rate", "2000", "--seed-pairs", "200"],
        capture_output=True, text=True, timeout=300)
    print(r.stdout)
    print(r.stderr, file=sys.stderr)
    if r.returncode != 0:
        sys.exit(f"FAIL: curation-load exited {r.returncode}")
    if "all present" not in r.stdout or "contention" not in r.stdout:
        sys.exit("FAIL: curation-load did not report both phases and its check")
    server.stop_cleanly()
    server = None
    print("PASS")
finally:
    if server is not None:
        server.kill()
    shutil.rmtree(tmp, ignore_errors=True)
