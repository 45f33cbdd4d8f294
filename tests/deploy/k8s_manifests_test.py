#!/usr/bin/env python3
"""Renders deploy/k8s offline and checks what a cluster would get.

Usage: k8s_manifests_test.py DEPLOY_K8S_DIR [CURATION_SERVER]

Renders the base and every overlay with `kubectl kustomize` ($KUBECTL, else kubectl on PATH),
then checks every object against the Kubernetes API models of python3-kubernetes: each is
deserialised into its model class (which enforces required fields) and walked field by field
against the model, so a misspelt or misplaced field fails here instead of being dropped by
the API server. The Prometheus Operator's ServiceMonitor is a CRD and is checked by hand.
Then the invariants the server depends on: one replica, the flag file (every flag known to
CURATION_SERVER when given), ports, volumes, secrets, probes, grace period, security.
Exits 1 and names every problem if any check fails.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import kubernetes.client
import yaml

MODELS = {
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
SERVICE_MONITOR = ("monitoring.coreos.com/v1", "ServiceMonitor")
# Grace beyond --grace_period_seconds for flushing and closing RocksDB before SIGKILL.
MIN_GRACE_MARGIN_SECONDS = 10


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, what):
        self.items.append(f"{where}: {what}")


# ---------------------------------------------------------------------------------------
# Model checks


def check_grpc_action(value, path, problems):
    """Probe.grpc (Kubernetes 1.24) is newer than Debian's python3-kubernetes models."""
    if not isinstance(value, dict):
        problems.add(path, "must be an object")
        return
    for key in value:
        if key not in ("port", "service"):
            problems.add(f"{path}.{key}", "unknown field of GRPCAction")
    port = value.get("port")
    # Unlike HTTP and TCP probes, a gRPC probe takes no port name.
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        problems.add(f"{path}.port", f"must be a port number, got {port!r}")
    if "service" in value and not isinstance(value["service"], str):
        problems.add(f"{path}.service", "must be a string")


# Fields added to Kubernetes after the models at hand, with their own checks.
NEWER_FIELDS = {("V1Probe", "grpc"): check_grpc_action}
PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
              "datetime": (str,), "date": (str,), "object": None}


def check_model(value, type_name, path, problems, quantity=False):
    """Walks value against the model named type_name, reporting unknown and mistyped fields."""
    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            problems.add(path, f"must be a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            check_model(item, type_name[5:-1], f"{path}[{i}]", problems, quantity)
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            problems.add(path, f"must be a map, got {type(value).__name__}")
            return
        inner = type_name[type_name.index(",") + 1:-1].strip()
        for key, item in value.items():
            check_model(item, inner, f"{path}.{key}", problems, quantity)
        return
    if type_name in PRIMITIVES:
        allowed = PRIMITIVES[type_name]
        # Quantities ("2Gi", "500m") are strings in the models; the API takes numbers too.
        if quantity and type_name == "str":
            allowed = (str, int, float)
        if allowed is None:
            return
        if isinstance(value, bool) and bool not in allowed:
            problems.add(path, f"must be {type_name}, got a boolean (quote it)")
        elif not isinstance(value, allowed):
            problems.add(path, f"must be {type_name}, got {type(value).__name__} {value!r}")
        return
    klass = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        problems.add(path, f"must be an object ({type_name}), got {type(value).__name__}")
        return
    by_json_name = {json_name: attr for attr, json_name in klass.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json_name:
            newer = NEWER_FIELDS.get((type_name, key))
            if newer:
                newer(item, f"{path}.{key}", problems)
            else:
                problems.add(f"{path}.{key}", f"unknown field of {type_name[2:]}")
            continue
        attr = by_json_name[key]
        check_model(item, klass.openapi_types[attr], f"{path}.{key}", problems,
                    quantity=type_name in ("V1ResourceRequirements",) or quantity)


class _Response:
    """What ApiClient.deserialize reads: a response whose .data is the JSON body."""

    def __init__(self, obj):
        self.data = json.dumps(obj)


def check_object(obj, where, problems):
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key == SERVICE_MONITOR:
        check_service_monitor_shape(obj, where, problems)
        return
    model = MODELS.get(key)
    if model is None:
        problems.add(where, f"unexpected object {key}")
        return
    try:
        # The model constructors enforce required fields.
        kubernetes.client.ApiClient().deserialize(_Response(obj), model)
    except (ValueError, TypeError) as e:
        problems.add(where, f"not a valid {model[2:]}: {e}")
    check_model(obj, model, where, problems)


def check_service_monitor_shape(obj, where, problems):
    allowed_top = {"apiVersion", "kind", "metadata", "spec"}
    for key in obj:
        if key not in allowed_top:
            problems.add(f"{where}.{key}", "unknown field of ServiceMonitor")
    check_model(obj.get("metadata"), "V1ObjectMeta", f"{where}.metadata", problems)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        problems.add(f"{where}.spec", "required")
        return
    known_spec = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                  "podTargetLabels", "sampleLimit", "targetLimit"}
    for key in spec:
        if key not in known_spec:
            problems.add(f"{where}.spec.{key}", "unknown field of ServiceMonitorSpec")
    check_model(spec.get("selector"), "V1LabelSelector", f"{where}.spec.selector", problems)
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        problems.add(f"{where}.spec.endpoints", "required, a non-empty list")
        return
    known_endpoint = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
                      "honorLabels", "honorTimestamps", "tlsConfig", "bearerTokenSecret",
                      "authorization", "basicAuth", "relabelings", "metricRelabelings", "params",
                      "followRedirects", "enableHttp2", "proxyUrl", "oauth2"}
    for i, endpoint in enumerate(endpoints):
        at = f"{where}.spec.endpoints[{i}]"
        if not isinstance(endpoint, dict):
            problems.add(at, "must be an object")
            continue
        for key in endpoint:
            if key not in known_endpoint:
                problems.add(f"{at}.{key}", "unknown field of Endpoint")
        if not isinstance(endpoint.get("port"), str):
            problems.add(f"{at}.port", "required: the Service port's name")
        if not str(endpoint.get("path", "/metrics")).startswith("/"):
            problems.add(f"{at}.path", "must start with /")
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint and not re.fullmatch(r"(\d+(ms|s|m|h))+", str(endpoint[key])):
                problems.add(f"{at}.{key}", f"not a Prometheus duration: {endpoint[key]!r}")


# ---------------------------------------------------------------------------------------
# Invariants of this deployment


def parse_flags(text):
    flags = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        flags[name.lstrip("-")] = value
    return flags


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def quantity(text):
    """'500m' -> 0.5, '2Gi' -> 2 * 2**30: enough to compare requests with limits."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
             "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    return float(match.group(1)) * units.get(match.group(2), 1)


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_invariants(objects, where, is_base, known_flags, problems):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    for kind in ("ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy",
                 "ServiceMonitor"):
        if len(by_kind.get(kind, [])) != 1:
            problems.add(where, f"expected one {kind}, got {len(by_kind.get(kind, []))}")
    if problems.items:
        return
    sts = by_kind["StatefulSet"][0]
    svc = by_kind["Service"][0]
    at = f"{where} StatefulSet/{sts['metadata']['name']}"
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    if spec.get("replicas") != 1:
        problems.add(at, "replicas must be 1: every server owns its RocksDB directory")
    if not matches(spec["selector"].get("matchLabels"), pod_labels):
        problems.add(at, "selector does not match the pod template's labels")
    if spec.get("serviceName") != svc["metadata"]["name"]:
        problems.add(at, f"serviceName {spec.get('serviceName')} is not the Service "
                     f"{svc['metadata']['name']}")
    containers = pod["containers"]
    if len(containers) != 1:
        problems.add(at, "expected one container")
        return
    c = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    for name in mounts:
        if name not in volumes and name not in claims:
            problems.add(at, f"volumeMount {name} names no volume")

    # Objects the pod refers to must be in the rendering (the base leaves Secrets to overlays).
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    secrets = {o["metadata"]["name"]: o for o in by_kind.get("Secret", [])}
    configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    for vname, volume in volumes.items():
        if "configMap" in volume and ("ConfigMap", volume["configMap"]["name"]) not in names:
            problems.add(at, f"volume {vname}: no ConfigMap {volume['configMap']['name']}")
        if "secret" in volume and not is_base and \
                ("Secret", volume["secret"]["secretName"]) not in names:
            problems.add(at, f"volume {vname}: no Secret {volume['secret']['secretName']}")

    # The flag file: mounted, passed, and consistent with the pod.
    flagfile = next((a.split("=", 1)[1] for a in c.get("args", []) if a.startswith("--flagfile=")),
                    None)
    if flagfile is None:
        problems.add(at, "the container is not given --flagfile")
        return
    flag_volume = next((v for v, p in mounts.items() if flagfile.startswith(p.rstrip("/") + "/")),
                       None)
    if flag_volume is None or "configMap" not in volumes.get(flag_volume, {}):
        problems.add(at, f"{flagfile} is not in a mounted ConfigMap")
        return
    cm = configmaps[volumes[flag_volume]["configMap"]["name"]]
    key = os.path.basename(flagfile)
    if key not in cm.get("data", {}):
        problems.add(at, f"ConfigMap {cm['metadata']['name']} has no key {key}")
        return
    flags = parse_flags(cm["data"][key])
    for name in flags:
        if "-" in name:
            problems.add(at, f"--{name}: inside a flag file absl wants --{name.replace('-', '_')}")
        elif known_flags is not None and name not in known_flags:
            problems.add(at, f"--{name} is not a flag of curation-server")
    for required in ("listen", "data_dir", "metrics_listen", "grace_period_seconds",
                     "admin_token_file"):
        if required not in flags:
            problems.add(at, f"server.flags lacks --{required}")
    if problems.items:
        return
    if port_of(flags["listen"]) != ports.get("grpc"):
        problems.add(at, f"--listen {flags['listen']} is not the container port 'grpc'")
    if port_of(flags["metrics_listen"]) != ports.get("metrics"):
        problems.add(at, f"--metrics_listen {flags['metrics_listen']} is not the port 'metrics'")
    data_mount = mounts.get("data")
    if "data" not in claims or not data_mount or \
            not flags["data_dir"].startswith(data_mount.rstrip("/") + "/"):
        problems.add(at, f"--data_dir {flags['data_dir']} is not on the persistent volume")

    def check_file_in_secret(flag):
        path = flags[flag]
        vname = next((v for v, p in mounts.items() if path.startswith(p.rstrip("/") + "/")), None)
        if vname is None or "secret" not in volumes.get(vname, {}):
            problems.add(at, f"--{flag} {path} is not in a mounted Secret")
            return
        secret = secrets.get(volumes[vname]["secret"]["secretName"])
        if secret is not None and os.path.basename(path) not in secret.get("data", {}):
            problems.add(at, f"--{flag}: Secret {secret['metadata']['name']} has no key "
                         f"{os.path.basename(path)}")

    for flag in ("admin_token_file", "tls_cert", "tls_key", "tls_client_ca"):
        if flag in flags:
            check_file_in_secret(flag)
    grace = int(flags["grace_period_seconds"])
    if pod.get("terminationGracePeriodSeconds", 30) < grace + MIN_GRACE_MARGIN_SECONDS:
        problems.add(at, f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')}"
                     f" leaves under {MIN_GRACE_MARGIN_SECONDS}s after --grace_period_seconds "
                     f"{grace} to flush and exit")

    # Probes: the gRPC health service, reachable the way the server listens.
    tls = "tls_cert" in flags
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(probe_name)
        if probe is None:
            problems.add(at, f"no {probe_name}")
            continue
        if "grpc" in probe:
            if probe["grpc"].get("port") != ports.get("grpc"):
                problems.add(at, f"{probe_name} asks port {probe['grpc'].get('port')}, "
                             f"not the gRPC port {ports.get('grpc')}")
            if tls:
                problems.add(at, f"{probe_name}: Kubernetes' gRPC probes speak plaintext, but "
                             "the server listens with TLS")
        elif "exec" in probe:
            command = probe["exec"].get("command", [])
            if "health" not in command:
                problems.add(at, f"{probe_name}: exec probe does not ask the health service")
            if tls and not any(a.startswith("--tls-ca") for a in command):
                problems.add(at, f"{probe_name}: exec probe lacks --tls-ca for a TLS server")
        else:
            problems.add(at, f"{probe_name} does not ask the gRPC health service")

    # Security and resources.
    psc = pod.get("securityContext", {})
    csc = c.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
        problems.add(at, "the pod must run as a non-root uid (runAsNonRoot, runAsUser)")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.add(at, "readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.add(at, "allowPrivilegeEscalation must be false")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        problems.add(at, "capabilities must drop ALL")
    resources = c.get("resources", {})
    for resource in ("cpu", "memory"):
        request = resources.get("requests", {}).get(resource)
        limit = resources.get("limits", {}).get(resource)
        if request is None or limit is None:
            problems.add(at, f"{resource} needs a request and a limit")
        elif quantity(request) > quantity(limit):
            problems.add(at, f"{resource} request {request} exceeds its limit {limit}")

    # Service, PodDisruptionBudget, NetworkPolicy and ServiceMonitor select this pod.
    sat = f"{where} Service/{svc['metadata']['name']}"
    if svc["spec"].get("clusterIP") != "None":
        problems.add(sat, "must be headless (clusterIP: None) to govern the StatefulSet")
    if not matches(svc["spec"].get("selector"), pod_labels):
        problems.add(sat, "selector does not match the pod")
    svc_ports = {p["name"]: p for p in svc["spec"].get("ports", [])}
    for name in ("grpc", "metrics"):
        port = svc_ports.get(name)
        if port is None:
            problems.add(sat, f"no port named {name}")
        elif port.get("targetPort") not in (name, ports.get(name)):
            problems.add(sat, f"port {name} targets {port.get('targetPort')}")
    pdb = by_kind["PodDisruptionBudget"][0]
    if not matches(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels):
        problems.add(f"{where} PodDisruptionBudget", "selector does not match the pod")
    if ("minAvailable" in pdb["spec"]) == ("maxUnavailable" in pdb["spec"]):
        problems.add(f"{where} PodDisruptionBudget", "set exactly one of minAvailable, "
                     "maxUnavailable")
    netpol = by_kind["NetworkPolicy"][0]
    if not matches(netpol["spec"].get("podSelector", {}).get("matchLabels"), pod_labels):
        problems.add(f"{where} NetworkPolicy", "podSelector does not match the pod")
    opened = {p.get("port") for rule in netpol["spec"].get("ingress", [])
              for p in rule.get("ports", [])}
    for name in ("grpc", "metrics"):
        if name not in opened and ports.get(name) not in opened:
            problems.add(f"{where} NetworkPolicy", f"lets no traffic reach port {name}")
    monitor = by_kind["ServiceMonitor"][0]
    selector = monitor["spec"]["selector"].get("matchLabels", {})
    if not matches(selector, svc["metadata"].get("labels", {})):
        problems.add(f"{where} ServiceMonitor", "selector does not match the Service")
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint.get("port") not in svc_ports:
            problems.add(f"{where} ServiceMonitor", f"port {endpoint.get('port')} is not a "
                         "port name of the Service")


# ---------------------------------------------------------------------------------------


def render(kubectl, directory):
    result = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: kubectl kustomize {directory}:\n{result.stderr}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def check_rendering(objects, where, is_base, known_flags):
    problems = Problems()
    for obj in objects:
        check_object(obj, f"{where} {obj.get('kind')}/{obj.get('metadata', {}).get('name')}",
                     problems)
    if not problems.items:
        check_invariants(objects, where, is_base, known_flags, problems)
    return problems.items


def self_test(objects, known_flags):
    """The checker must catch the mistakes it exists for, or its passes mean nothing."""
    def broken(mutate):
        copy_ = copy.deepcopy(objects)
        sts = next(o for o in copy_ if o["kind"] == "StatefulSet")
        mutate(sts, copy_)
        return check_rendering(copy_, "self-test", True, known_flags)

    def container(sts):
        return sts["spec"]["template"]["spec"]["containers"][0]

    cases = {
        "misspelt field": lambda sts, _: container(sts).update(
            readinesProbe=container(sts).pop("readinessProbe")),
        "missing required field": lambda sts, _: container(sts).pop("name"),
        "unquoted boolean label": lambda sts, _: sts["metadata"]["labels"].update(x=True),
        "second replica": lambda sts, _: sts["spec"].update(replicas=2),
        "grace period too short": lambda sts, _: sts["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=1),
        "probe port name": lambda sts, _: container(sts)["livenessProbe"].update(
            grpc={"port": "grpc"}),
    }
    failures = [name for name, mutate in cases.items() if not broken(mutate)]
    return failures


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    source = os.path.abspath(sys.argv[1])
    known_flags = None
    if len(sys.argv) == 3:
        helpfull = subprocess.run([sys.argv[2], "--helpfull"], capture_output=True, text=True)
        known_flags = set(re.findall(r"^\s+--(\w+) \(", helpfull.stdout + helpfull.stderr, re.M))
        if "data_dir" not in known_flags:
            sys.exit(f"FAIL: could not read the flags of {sys.argv[2]}")
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        sys.exit("FAIL: no kubectl (Debian: apt-get install kubernetes-client)")
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True)
    print(f"kubectl: {(version.stdout or version.stderr).splitlines()[0]}")

    passed, failed = 0, 0
    with tempfile.TemporaryDirectory(prefix="curation-k8s-") as tmp:
        # Overlays read their secrets from files that are never committed: render a copy
        # with freshly made ones, as an operator would.
        tree = os.path.join(tmp, "k8s")
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns("secrets"))
        targets = [("base", os.path.join(tree, "base"), True)]
        overlays = os.path.join(tree, "overlays")
        for name in sorted(os.listdir(overlays)):
            path = os.path.join(overlays, name)
            make_secrets = os.path.join(path, "make-secrets.sh")
            if os.path.exists(make_secrets):
                subprocess.run([make_secrets], check=True, stdout=subprocess.DEVNULL)
            targets.append((f"overlays/{name}", path, False))
        renderings = {}
        for where, path, is_base in targets:
            objects = render(kubectl, path)
            renderings[where] = objects
            problems = check_rendering(objects, where, is_base, known_flags)
            kinds = ", ".join(sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
            if problems:
                failed += 1
                print(f"FAIL {where}:\n  " + "\n  ".join(problems))
            else:
                passed += 1
                print(f"ok   {where}: {len(objects)} objects valid ({kinds})")
        missed = self_test(renderings["base"], known_flags)
        if missed:
            failed += 1
            print(f"FAIL self-test: the checker let through: {', '.join(missed)}")
        else:
            passed += 1
            print("ok   self-test: broken copies of the base are caught")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
