#!/usr/bin/env python3
"""curation-noisy-neighbour against a real server with authentication on: both phases must run,
every quiet call must succeed and the table must be printed. Its latency ratios are printed
for the log but decide nothing: they depend on the machine.

Usage: noisy_neighbour_test.py CURATION_SERVER CURATION_NOISY_NEIGHBOUR [SECONDS_PER_PHASE]"""
import os, shutil, subprocess, sys, tempfile

from local_server import LocalServer

server_bin, tool_bin = sys.argv[1:3]
seconds = sys.argv[3] if len(sys.argv) > 3 else "3"

tmp = tempfile.mkdtemp(prefix="curation-noisy-")
server = None
try:
    server = LocalServer(server_bin, tmp, "noisy-test-admin-token-0123456789")
    address, token_file = server.address, server.token_file
    r = subprocess.run(
        [tool_bin, "--server", address, "--admin-token-file", token_file, "--seconds", seconds,
         "--noisy-pairs", "2000", "--quiet-pairs", "200"],
        capture_output=True, text=True, timeout=300)
    print(r.stdout)
    print(r.stderr, file=sys.stderr)
    if r.returncode != 0:
        sys.exit(f"FAIL: curation-noisy-neighbour exited {r.returncode}")
    for needle in ("Select (RANDOM, 10)    contention", "GetDataset             contention",
                   "p99 ratio", "heavy calls finished"):
        if needle not in r.stdout:
            sys.exit(f"FAIL: no '{needle}' in the report")
    # The noisy jobs were cancelled with their calls: the server stops cleanly at once.
    server.stop_cleanly()
    server = None
    print("PASS")
finally:
    if server is not None:
        server.kill()
    shutil.rmtree(tmp, ignore_errors=True)
