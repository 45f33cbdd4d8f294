#!/usr/bin/env python3
"""curation-noisy-neighbour against a real server with authentication on: both phases must run,
every quiet call must succeed and the table must be printed. Its latency ratios are printed
for the log but decide nothing: they depend on the machine.

Usage: noisy_neighbour_test.py CURATION_SERVER CURATION_NOISY_NEIGHBOUR [SECONDS_PER_PHASE]"""
import os, shutil, subprocess, sys, tempfile, time

server_bin, tool_bin = sys.argv[1:3]
seconds = sys.argv[3] if len(sys.argv) > 3 else "3"

tmp = tempfile.mkdtemp(prefix="curation-noisy-")
server = None
try:
    token_file = os.path.join(tmp, "admin-token")
    with open(token_file, "w") as f:
        f.write("noisy-test-admin-token-0123456789\n")
    port_file = os.path.join(tmp, "port")
    server_log = os.path.join(tmp, "server.log")
    server = subprocess.Popen(
        [server_bin, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "db"),
         "--port-file", port_file, "--admin-token-file", token_file],
        stdout=subprocess.DEVNULL, stderr=open(server_log, "w"))
    deadline = time.time() + 60
    while not (os.path.exists(port_file) and open(port_file).read().strip()):
        if time.time() > deadline or server.poll() is not None:
            sys.exit("FAIL: the server did not write its port file:\n" + open(server_log).read())
        time.sleep(0.1)
    address = "127.0.0.1:" + open(port_file).read().strip()
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
    server.terminate()
    if server.wait(timeout=60) != 0:
        sys.exit(f"FAIL: the server exited {server.returncode} on SIGTERM:\n" +
                 open(server_log).read()[-4000:])
    server = None
    print("PASS")
finally:
    if server is not None:
        server.kill()
        server.wait()
    shutil.rmtree(tmp, ignore_errors=True)
