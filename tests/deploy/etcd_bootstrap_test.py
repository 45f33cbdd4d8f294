#!/usr/bin/env python3
"""Boots overlays/cluster's etcd from its rendered manifest with Debian's real etcd.

Usage: etcd_bootstrap_test.py DEPLOY_K8S_DIR

Renders overlays/cluster with `kubectl kustomize` ($KUBECTL, else kubectl on PATH), takes the
etcd StatefulSet's command and arguments as they are, and runs one /usr/bin/etcd per replica
on this machine: $(POD_NAME) becomes each pod's name, and inside a private mount namespace
(unshare) an /etc/hosts gives each pod's DNS name (POD.SERVICE, as the headless Service would)
a loopback address of its own. Two things differ from a cluster, and only so the three share one
machine: listen addresses 0.0.0.0 become the member's own address, and the data directory moves
from the volume to a temporary one. Then checks that the members form one cluster of the three
names in --initial-cluster, that /health on the metrics port (the readiness probe) says healthy,
that the curation servers' etcd-endpoints (ConfigMap curation-cluster) reach every member with
one view of the data, and that a member stopped and started again from its data directory
rejoins while the other two keep a quorum; and that a member left without a quorum fails the
readiness probe but passes the liveness probe, as the manifest states them.
Exits 77 (skipped) without etcd, kubectl or unshare; 1 if a check fails.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ETCD = "/usr/bin/etcd"
INNER = "CURATION_ETCD_BOOTSTRAP_INNER"
# Bounds on waiting for etcd, never pass/fail by themselves: a member that is not healthy by
# then has failed to form or rejoin the cluster.
HEALTHY_WITHIN_SECONDS = 60
# Straight to the members, whatever http_proxy says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def render(source, tmp):
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        skip("no kubectl")
    tree = os.path.join(tmp, "k8s")
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns("secrets"))
    overlay = os.path.join(tree, "overlays", "cluster")
    subprocess.run([os.path.join(overlay, "make-secrets.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    out = subprocess.run([kubectl, "kustomize", overlay], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"FAIL: kubectl kustomize {overlay}:\n{out.stderr}")
    return [o for o in yaml.safe_load_all(out.stdout) if o]


class Member:
    def __init__(self, name, address, argv, log):
        self.name, self.address, self.argv, self.log = name, address, argv, log
        self.process = None

    def start(self):
        # As in a pod: no proxy, which etcd would use for its peers' names.
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.process = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=env)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def health(url):
    try:
        with OPENER.open(url, timeout=2) as response:
            return response.status == 200 and b'"health":"true"' in response.read()
    except OSError:
        return False


def wait_healthy(urls):
    deadline = time.monotonic() + HEALTHY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if all(health(u) for u in urls):
            return True
        time.sleep(0.2)
    return False


def gateway(url, path, body):
    """etcd's v3 API through its JSON gateway on the client port (no etcdctl needed)."""
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with OPENER.open(request, timeout=5) as response:
        return json.load(response)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def put(endpoints, key, value):
    """Through the first endpoint that answers, as the server's etcd client does."""
    for url in endpoints:
        try:
            gateway(url, "/v3/kv/put", {"key": b64(key), "value": b64(value)})
            return True
        except OSError:
            continue
    return False


def get(url, key, serializable=False):
    try:
        kvs = gateway(url, "/v3/kv/range", {"key": b64(key), "serializable": serializable})
    except OSError as e:
        return f"error: {e}"
    kvs = kvs.get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def inner(objects, tmp):
    sts = next(o for o in objects if o["kind"] == "StatefulSet" and
               o["metadata"]["labels"].get("app.kubernetes.io/component") == "etcd")
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and
              "etcd-endpoints" in o.get("data", {}))
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    namespace = sts["metadata"].get("namespace", "default")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")
    pod_name_var = next(e["name"] for e in c["env"]
                        if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") ==
                        "metadata.name")
    replicas = sts["spec"]["replicas"]
    # Loopback addresses of this run's own, so that parallel runs do not meet.
    net = f"127.{77 + os.getpid() % 100}.{os.getpid() % 250}"
    pods = [(f"{name}-{i}", f"{net}.{10 + i}") for i in range(replicas)]
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n")
        for pod, address in pods:
            f.write(f"{address} {pod}.{service} {pod}.{service}.{namespace}.svc.cluster.local\n")
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)

    members = []
    metrics_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
    for pod, address in pods:
        argv = []
        for arg in c["command"] + c.get("args", []):
            arg = arg.replace(f"$({pod_name_var})", pod)
            if arg.startswith("--listen-"):
                arg = arg.replace("0.0.0.0", address)
            if arg.startswith("--data-dir="):
                arg = arg.replace(mount, os.path.join(tmp, pod), 1)
            argv.append(arg)
        argv[0] = ETCD
        members.append(Member(pod, address, argv, open(os.path.join(tmp, f"{pod}.log"), "w")))
    health_urls = {m.name: f"http://{m.address}:{metrics_port}/health" for m in members}
    endpoints = cm["data"]["etcd-endpoints"].split(",")

    passed, failed = 0, 0

    def check(ok, what):
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        passed, failed = passed + bool(ok), failed + (not ok)
        return ok

    try:
        for m in members:
            m.start()
        if not check(wait_healthy(health_urls.values()),
                     f"{replicas} members started together are healthy (/health, metrics port)"):
            raise RuntimeError
        listed = sorted((m.get("name"), ",".join(m.get("peerURLs", []))) for m in
                        gateway(endpoints[0], "/v3/cluster/member/list", {})["members"])
        flag = next(a for a in c["args"] if a.startswith("--initial-cluster="))
        expected = sorted(tuple(e.split("=", 1)) for e in flag.split("=", 1)[1].split(","))
        check(listed == expected, f"one cluster of exactly --initial-cluster's members: {listed}")
        check(put(endpoints, "/curation-test/key", "one"),
              "a put through the servers' etcd-endpoints")
        for url in endpoints:
            out = get(url, "/curation-test/key")
            check(out == "one", f"{url} reads it: {out!r}")

        stopped = members[-1]
        stopped.stop()
        others = [health_urls[m.name] for m in members[:-1]]
        check(wait_healthy(others) and not health(health_urls[stopped.name]),
              f"{stopped.name} stopped: the others keep a quorum")
        check(put(endpoints, "/curation-test/key", "two"), f"a put with {stopped.name} down")
        stopped.start()
        check(wait_healthy([health_urls[stopped.name]]),
              f"{stopped.name} restarted from its data directory is healthy again")
        url = next(u for u in endpoints if stopped.name in u)
        deadline = time.monotonic() + HEALTHY_WITHIN_SECONDS
        out = get(url, "/curation-test/key", serializable=True)
        while out != "two" and time.monotonic() < deadline:
            time.sleep(0.2)
            out = get(url, "/curation-test/key", serializable=True)
        check(out == "two", f"and has caught up (its own copy): {out!r}")

        # The probes as the manifest states them, on a member that has lost its quorum: not
        # ready, but alive (a liveness failure would restart every member at once).
        def probe_url(probe, address):
            get = c[probe]["httpGet"]
            port = next((p["containerPort"] for p in c["ports"] if p["name"] == get["port"]),
                        get["port"])
            return f"http://{address}:{port}{get['path']}"

        for m in members[1:]:
            m.stop()
        alone = members[0]
        try:
            with OPENER.open(probe_url("livenessProbe", alone.address),
                                        timeout=5) as response:
                alive = response.status == 200
        except OSError:
            alive = False
        ready = health(probe_url("readinessProbe", alone.address))
        check(alive and not ready, f"{alone.name} without a quorum: live ({alive}), "
              f"not ready ({not ready})")
    except RuntimeError:
        pass
    finally:
        for m in members:
            m.stop()
        if failed:
            for m in members:
                m.log.flush()
                with open(m.log.name) as f:
                    print(f"--- {m.name} (last lines)\n" + "".join(f.readlines()[-15:]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    if not os.access(ETCD, os.X_OK):
        skip(f"no {ETCD} (Debian: etcd-server)")
    if os.environ.get(INNER) != "1":
        # Everything below runs in a mount namespace of its own, where /etc/hosts may change.
        if not shutil.which("unshare"):
            skip("no unshare")
        probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
        if probe.returncode != 0:
            skip("unshare --mount is not allowed here (needs root)")
        result = subprocess.run(["unshare", "--mount", sys.executable, *sys.argv],
                                env={**os.environ, INNER: "1"})
        sys.exit(result.returncode)
    with tempfile.TemporaryDirectory(prefix="curation-etcd-boot-") as tmp:
        sys.exit(inner(render(os.path.abspath(sys.argv[1]), tmp), tmp))


if __name__ == "__main__":
    main()
