#!/usr/bin/env python3
"""A real Prometheus scrapes the real server; the series must exist and move with traffic.

Usage: prometheus_test.py CURATION_SERVER CURATION_CLI SAMPLE.jsonl.gz
Exits non-zero, saying why, if any check fails."""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.parse, urllib.request

server_bin, cli_bin, sample = sys.argv[1:4]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    sys.exit(f"FAIL: timed out waiting for {what}")


tmp = tempfile.mkdtemp(prefix="curation-prom-")
procs = []
try:
    metrics_port, prom_port = free_port(), free_port()
    port_file = os.path.join(tmp, "port")
    server = subprocess.Popen(
        [server_bin, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "db"),
         "--port-file", port_file, "--auth=false", "--metrics-listen", f"127.0.0.1:{metrics_port}"],
        stderr=open(os.path.join(tmp, "server.log"), "w"))
    procs.append(server)
    wait_for("the server's port file", lambda: os.path.exists(port_file))
    address = "127.0.0.1:" + open(port_file).read().strip()

    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: curation
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prometheus.log"), "w"))
    procs.append(prom)

    def query(expr):
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
        except OSError:
            return None
        return body["data"]["result"] if body.get("status") == "success" else None

    def value(expr):
        result = query(expr)
        return float(result[0]["value"][1]) if result else None

    def cli(*args):
        r = subprocess.run([cli_bin, "--server", address, *args], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"FAIL: curation {' '.join(args)}: {r.stderr}")

    wait_for("Prometheus to see the target up", lambda: value('up{job="curation"}') == 1.0)
    wait_for("process and RocksDB series",
             lambda: value("process_resident_memory_bytes") and
             value("curation_rocksdb_memtable_bytes") is not None)

    cli("datasets", "create", "prom")
    cli("ingest", "prom", sample)
    cli("select", "prom", "--budget", "10%", "--method", "isa")
    sel = 'curation_rpc_requests_total{method="/curation.v1.CurationService/SelectStream",code="OK"}'  # the CLI streams progress
    wait_for("the Select counter", lambda: value(sel) == 1.0)
    accepted = wait_for("accepted records",
                        lambda: value('curation_ingested_records_total{outcome="accepted"}'))
    if accepted != 499.0:
        sys.exit(f"FAIL: accepted records {accepted}, expected 499")
    wait_for("tenant examples", lambda: value('curation_tenant_examples{tenant="default"}') == 499.0)
    # 499 pairs of 256-d float16 vectors (the default encoding): 512 bytes each, and at most
    # one block's growth slack on top.
    vector_bytes = wait_for("vector memory", lambda: value("curation_vector_memory_bytes"))
    if not 499 * 2 * 512 <= vector_bytes <= 2 * 499 * 2 * 512:
        sys.exit(f"FAIL: curation_vector_memory_bytes {vector_bytes}, expected about {499 * 2 * 512}")
    wait_for("selection histogram",
             lambda: value('curation_selection_duration_seconds_count{method="isa"}') == 1.0)
    # The select ran as a job of the tenant: its wait and run are timed, it ended OK, and
    # nothing is queued or running now.
    job = 'tenant="default",kind="OPERATION_KIND_SELECT"'
    wait_for("job run histogram",
             lambda: value('curation_job_run_seconds_count{' + job + '}') == 1.0)
    wait_for("job wait histogram",
             lambda: value('curation_job_wait_seconds_count{' + job + '}') == 1.0)
    wait_for("jobs by code",
             lambda: value('curation_jobs_total{' + job + ',code="0"}') == 1.0)
    wait_for("no job queued", lambda: value('curation_jobs{state="queued",tenant="default"}') == 0.0)
    # The series move: more traffic, higher counters; errors are counted by code.
    cli("select", "prom", "--budget", "5", "--method", "random")
    wait_for("the Select counter to move", lambda: value(sel) == 2.0)
    subprocess.run([cli_bin, "--server", address, "datasets", "get", "missing"],
                   capture_output=True)
    wait_for("NOT_FOUND counted", lambda: value(
        'curation_rpc_requests_total{method="/curation.v1.CurationService/GetDataset",code="NOT_FOUND"}') == 1.0)
    wait_for("a latency quantile", lambda: value(
        'histogram_quantile(0.99, rate(curation_rpc_duration_seconds_bucket[1m]))') is not None)
    print("PASS: Prometheus scraped the server and saw every series move")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    if procs and procs[0].returncode not in (0, None):
        print(open(os.path.join(tmp, "server.log")).read()[-2000:], file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
