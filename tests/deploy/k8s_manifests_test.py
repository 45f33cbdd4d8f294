#!/usr/bin/env python3
"""Renders deploy/k8s offline and checks what a cluster would get.

Usage: k8s_manifests_test.py DEPLOY_K8S_DIR [CURATION_SERVER]

Renders the base and every overlay with `kubectl kustomize` ($KUBECTL, else kubectl on PATH),
then checks every object against the Kubernetes API models of python3-kubernetes: each is
deserialised into its model class (which enforces required fields) and walked field by field
against the model, so a misspelt or misplaced field fails here instead of being dropped by
the API server. The Prometheus Operator's ServiceMonitor is a CRD and is checked by hand.
Then the invariants the server depends on: one replica without --cluster-etcd, the flag file
and arguments (every flag known to CURATION_SERVER when given, and etcd's to /usr/bin/etcd
when installed), ports, volumes, secrets, probes, grace period, security, the Services, the
disruption budget, and the network policies evaluated together (who reaches which port).
With --cluster-etcd (overlays/cluster, overlays/external-etcd): at least 3 members, each named
after its pod and advertising its DNS name under the members' headless Service, and
--cluster-etcd naming exactly the etcd pods when the etcd is rendered too; that etcd's static
--initial-cluster, Service, probes, budget and policies. A self-test breaks copies of the
base and of overlays/cluster and expects each break to be caught.
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

SERVER, ETCD = "server", "etcd"
# Peers the network policies are tried with: a client pod in another namespace, a pod of
# this namespace that is neither server nor etcd, and the monitoring namespace.
CLIENT_POD = {"curation.dev/client": "true"}
CLIENT_NAMESPACE = {"kubernetes.io/metadata.name": "training"}
STRANGER_POD = {"app.kubernetes.io/name": "something-else"}
MONITORING_NAMESPACE = {"kubernetes.io/metadata.name": "monitoring"}


def parse_flags(text):
    flags = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        flags[name.lstrip("-")] = value
    return flags


def parse_args(args, underscore=True):
    """Container arguments --name=value as {name: value}; the server takes --a-b as --a_b."""
    flags = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            flags[name.replace("-", "_") if underscore else name] = value
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
    """A workload's or Service's matchLabels: an empty one is a mistake, not 'everything'."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def component_of(obj):
    return obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")


# Network policies, evaluated as the API server documents them: a pod selected by any policy
# of a direction is isolated in it, and then admits what some rule of those policies allows.


def selector_selects(selector, labels):
    """A LabelSelector: {} selects everything, matchLabels and matchExpressions all hold."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, values = expr.get("key"), expr.get("values") or []
        present = key in labels
        holds = {"In": present and labels.get(key) in values,
                 "NotIn": not present or labels.get(key) not in values,
                 "Exists": present, "DoesNotExist": not present}.get(expr.get("operator"))
        if not holds:
            return False
    return True


def peer_matches(rule_peer, labels, same_namespace, namespace_labels):
    """labels None: an address that is no pod (a DNS cache, an etcd outside the cluster)."""
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        return block.get("cidr") in ("0.0.0.0/0", "::/0") and not block.get("except")
    if labels is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not selector_selects(rule_peer["namespaceSelector"], namespace_labels):
            return False
    elif not same_namespace:
        return False
    return selector_selects(rule_peer.get("podSelector", {}), labels)


def policy_types(policy):
    types = policy["spec"].get("policyTypes")
    if types:
        return types
    return ["Ingress"] + (["Egress"] if "egress" in policy["spec"] else [])


def allowed(policies, direction, pod, peer, port, protocol="TCP", same_namespace=True,
            namespace_labels=None):
    """Whether traffic between the pod (labels) and the peer reaches port (name, number):
    from the peer for Ingress, to it for Egress."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    isolating = [p for p in policies if direction in policy_types(p) and
                 selector_selects(p["spec"].get("podSelector", {}), pod)]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get(rules_key) or []:
            ports = rule.get("ports")
            if ports and not any(p.get("protocol", "TCP") == protocol and
                                 ("port" not in p or p["port"] in port) for p in ports):
                continue
            peers = rule.get(peers_key)
            if not peers or any(peer_matches(x, peer, same_namespace, namespace_labels or {})
                                for x in peers):
                return True
    return False


def resolve_env(container, configmaps, at, problems):
    """{name: ("value", text) | ("field", path) | ("other", None)} for the container's env."""
    env = {}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = ("value", var["value"])
        elif "fieldRef" in source:
            env[var["name"]] = ("field", source["fieldRef"].get("fieldPath"))
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = configmaps.get(ref.get("name"), {}).get("data", {})
            if ref.get("key") not in data:
                problems.add(at, f"env {var['name']}: no ConfigMap {ref.get('name')} with key "
                             f"{ref.get('key')}")
                env[var["name"]] = ("other", None)
            else:
                env[var["name"]] = ("value", data[ref["key"]])
        else:
            env[var["name"]] = ("other", None)
    return env


def expand(text, env, at, problems):
    """Kubernetes' $(VAR) in arguments: values are put in, downward-API fields stay $(VAR).
    A $(VAR) of no env var reaches the program verbatim, which is never meant here."""
    def substitute(match):
        kind, value = env.get(match.group(1), (None, None))
        if kind is None:
            problems.add(at, f"{text}: $({match.group(1)}) is no env var of the container")
        return value if kind == "value" else match.group(0)
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", substitute, text)


def field_var(env, path):
    """The name of an env var holding the downward-API field `path`, as $(NAME), or None."""
    name = next((n for n, (kind, value) in env.items() if kind == "field" and value == path), None)
    return f"$({name})" if name else None


def check_security_and_resources(pod, c, at, problems):
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


def one_disruption(pdb, replicas):
    """The budget lets exactly one pod of `replicas` go at a time."""
    spec = pdb["spec"]
    return spec.get("maxUnavailable") == 1 if "maxUnavailable" in spec else \
        spec.get("minAvailable") == replicas - 1


def check_invariants(objects, where, is_base, known, problems):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    servers = [s for s in by_kind.get("StatefulSet", []) if component_of(s) == SERVER]
    etcds = [s for s in by_kind.get("StatefulSet", []) if component_of(s) == ETCD]
    if len(servers) != 1:
        problems.add(where, f"expected one StatefulSet of component {SERVER}, got {len(servers)}")
    if len(etcds) > 1:
        problems.add(where, f"expected at most one StatefulSet of component {ETCD}")
    for sts in by_kind.get("StatefulSet", []):
        if component_of(sts) not in (SERVER, ETCD):
            problems.add(where, f"StatefulSet/{sts['metadata']['name']}: component neither "
                         f"{SERVER} nor {ETCD}")
    for kind in ("ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy"):
        if not by_kind.get(kind):
            problems.add(where, f"no {kind}")
    if len(by_kind.get("ServiceMonitor", [])) != 1:
        problems.add(where, f"expected one ServiceMonitor, got "
                     f"{len(by_kind.get('ServiceMonitor', []))}")
    if problems.items:
        return
    etcd = etcds[0] if etcds else None
    check_server(servers[0], etcd, objects, by_kind, where, is_base, known, problems)
    if etcd is not None:
        check_etcd(etcd, servers[0], by_kind, where, known, problems)


def check_server(sts, etcd, objects, by_kind, where, is_base, known, problems):
    at = f"{where} StatefulSet/{sts['metadata']['name']}"
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    if not matches(spec["selector"].get("matchLabels"), pod_labels):
        problems.add(at, "selector does not match the pod template's labels")
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
        if "secret" in volume and not is_base and not volume["secret"].get("optional") and \
                ("Secret", volume["secret"]["secretName"]) not in names:
            problems.add(at, f"volume {vname}: no Secret {volume['secret']['secretName']}")

    # The flag file: mounted, passed, and consistent with the pod. Flags that differ per pod
    # (the member's name and address) are arguments, where Kubernetes expands $(VAR).
    args = c.get("args", [])
    flagfile = next((a.split("=", 1)[1] for a in args if a.startswith("--flagfile=")), None)
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
        elif known is not None and name not in known["server"]:
            problems.add(at, f"--{name} is not a flag of curation-server")
    arg_flags = parse_args(args)
    for raw in parse_args(args, underscore=False):
        name = raw.replace("-", "_")
        if known is not None and name != "flagfile" and name not in known["server"]:
            problems.add(at, f"argument --{raw} is not a flag of curation-server")
    env = resolve_env(c, configmaps, at, problems)
    flags.update({name: expand(value, env, at, problems) for name, value in arg_flags.items()})
    missing = [f for f in ("listen", "data_dir", "metrics_listen", "grace_period_seconds",
                           "admin_token_file") if f not in flags]
    for flag in missing:
        problems.add(at, f"server.flags lacks --{flag}")
    if missing:
        return
    cluster = "cluster_etcd" in flags
    if cluster and spec.get("replicas", 1) < 3:
        problems.add(at, f"replicas {spec.get('replicas', 1)}: a cluster needs at least 3 members")
    if not cluster and spec.get("replicas") != 1:
        problems.add(at, "replicas must be 1 without --cluster-etcd: every server owns its "
                     "RocksDB directory")
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
    check_security_and_resources(pod, c, at, problems)

    # Services: one for clients (ready servers only) and the StatefulSet's governing one,
    # which for a cluster is the members' own (starting members too).
    services = by_kind["Service"]
    governing = next((s for s in services if s["metadata"]["name"] == spec.get("serviceName")),
                     None)
    if governing is None:
        problems.add(at, f"serviceName {spec.get('serviceName')} names no Service")
        return
    client_services = [s for s in services if matches(s["spec"].get("selector"), pod_labels)
                       and not s["spec"].get("publishNotReadyAddresses")]
    if len(client_services) != 1:
        problems.add(at, f"expected one Service for clients (ready servers only), got "
                     f"{[s['metadata']['name'] for s in client_services]}")
        return
    svc = client_services[0]
    for s in {id(svc): svc, id(governing): governing}.values():
        sat = f"{where} Service/{s['metadata']['name']}"
        if s["spec"].get("clusterIP") != "None":
            problems.add(sat, "must be headless (clusterIP: None): gRPC clients and members "
                         "resolve the pods themselves")
        if not matches(s["spec"].get("selector"), pod_labels):
            problems.add(sat, "selector does not match the pod")
        for p in s["spec"].get("ports", []):
            if p.get("targetPort") not in (p.get("name"), ports.get(p.get("name"))):
                problems.add(sat, f"port {p.get('name')} targets {p.get('targetPort')}")
    svc_ports = {p["name"]: p for p in svc["spec"].get("ports", [])}
    for name in ("grpc", "metrics"):
        if name not in svc_ports:
            problems.add(f"{where} Service/{svc['metadata']['name']}", f"no port named {name}")

    # Disruption budget.
    pdbs = [p for p in by_kind["PodDisruptionBudget"]
            if matches(p["spec"].get("selector", {}).get("matchLabels"), pod_labels)]
    if len(pdbs) != 1:
        problems.add(at, f"expected one PodDisruptionBudget selecting the pod, got {len(pdbs)}")
    elif ("minAvailable" in pdbs[0]["spec"]) == ("maxUnavailable" in pdbs[0]["spec"]):
        problems.add(f"{where} PodDisruptionBudget", "set exactly one of minAvailable, "
                     "maxUnavailable")
    elif cluster and not one_disruption(pdbs[0], spec["replicas"]):
        problems.add(f"{where} PodDisruptionBudget", "a cluster's members go one at a time: "
                     "maxUnavailable: 1")

    # Network policies, all together.
    policies = by_kind["NetworkPolicy"]
    grpc, metrics = ("grpc", ports.get("grpc")), ("metrics", ports.get("metrics"))
    npat = f"{where} NetworkPolicy"
    if not allowed(policies, "Ingress", pod_labels, CLIENT_POD, grpc, same_namespace=False,
                   namespace_labels=CLIENT_NAMESPACE):
        problems.add(npat, "a pod labelled curation.dev/client: \"true\" cannot reach port grpc")
    if allowed(policies, "Ingress", pod_labels, STRANGER_POD, grpc):
        problems.add(npat, "a pod that is no client reaches port grpc")
    if not allowed(policies, "Ingress", pod_labels, {}, metrics, same_namespace=False,
                   namespace_labels=MONITORING_NAMESPACE):
        problems.add(npat, "the monitoring namespace cannot reach port metrics")
    dns_allowed = allowed(policies, "Egress", pod_labels, None, (None, 53), "UDP")
    if cluster:
        if not allowed(policies, "Ingress", pod_labels, pod_labels, grpc):
            problems.add(npat, "members cannot reach one another's port grpc (ingress)")
        if not allowed(policies, "Egress", pod_labels, pod_labels, grpc):
            problems.add(npat, "members cannot reach one another's port grpc (egress)")
        if not dns_allowed:
            problems.add(npat, "members cannot resolve names (egress to port 53)")
    else:
        if dns_allowed or allowed(policies, "Egress", pod_labels, pod_labels, grpc):
            problems.add(npat, "a single server opens no connections: no egress")

    # ServiceMonitor: each endpoint scrapes each server through exactly one Service.
    monitor = by_kind["ServiceMonitor"][0]
    selector = monitor["spec"]["selector"].get("matchLabels", {})
    selected = [s for s in services if matches(selector, s["metadata"].get("labels", {}))]
    if svc not in selected:
        problems.add(f"{where} ServiceMonitor", "selector does not match the client Service")
    for endpoint in monitor["spec"]["endpoints"]:
        with_port = [s["metadata"]["name"] for s in selected
                     if endpoint.get("port") in {p["name"] for p in s["spec"].get("ports", [])}]
        if len(with_port) != 1:
            problems.add(f"{where} ServiceMonitor", f"port {endpoint.get('port')} is on "
                         f"{with_port} of the selected Services: each server must be scraped "
                         "once")

    if cluster:
        check_membership(flags, env, governing, ports, etcd, policies, pod_labels, at, problems)


def check_membership(flags, env, governing, ports, etcd, policies, pod_labels, at, problems):
    """--member, --advertise and --cluster-etcd against the objects they name."""
    pod_name, pod_namespace = field_var(env, "metadata.name"), field_var(env, "metadata.namespace")
    if pod_name is None or flags.get("member") != pod_name:
        problems.add(at, f"--member {flags.get('member')!r} must be the pod's name: $(VAR) of an "
                     "env var from fieldRef metadata.name (unique, and stable across restarts)")
    gname = governing["metadata"]["name"]
    advertise = f"{pod_name}.{gname}.{pod_namespace}.svc.cluster.local:{ports.get('grpc')}"
    if not governing["spec"].get("publishNotReadyAddresses"):
        problems.add(at, f"Service {gname} gives the members their names but publishes only "
                     "ready ones: starting members could not reach one another")
    if "grpc" not in {p.get("name") for p in governing["spec"].get("ports", [])}:
        problems.add(at, f"Service {gname} has no port grpc for the members")
    if pod_name is None or pod_namespace is None or flags.get("advertise") != advertise:
        problems.add(at, f"--advertise {flags.get('advertise')!r} must be the pod's name under "
                     f"the members' Service and the gRPC port: {advertise!r}")
    urls = flags["cluster_etcd"].split(",")
    endpoints = []
    for url in urls:
        match = re.fullmatch(r"http://([A-Za-z0-9.-]+):(\d+)", url)
        if match is None:
            problems.add(at, f"--cluster-etcd: {url!r} is not http://HOST:PORT")
        else:
            endpoints.append((match.group(1), int(match.group(2))))
    if etcd is None:
        # An etcd named by the overlay: the members must be let out to its port.
        for host, port in endpoints:
            if not allowed(policies, "Egress", pod_labels, None, (None, port)):
                problems.add(at, f"no NetworkPolicy lets the members reach {host}:{port}")
        return
    name, service = etcd["metadata"]["name"], etcd["spec"].get("serviceName")
    namespace = etcd["metadata"].get("namespace", "")
    client = next((p["containerPort"] for p in etcd["spec"]["template"]["spec"]["containers"][0]
                   .get("ports", []) if p.get("name") == "client"), None)
    expected = sorted(f"{name}-{i}.{service}" for i in range(etcd["spec"].get("replicas", 1)))
    suffixes = (f".{namespace}.svc.cluster.local", f".{namespace}.svc", f".{namespace}")
    hosts = []
    for host, port in endpoints:
        for suffix in suffixes:
            if namespace and host.endswith(suffix):
                host = host[:-len(suffix)]
                break
        hosts.append(host)
        if port != client:
            problems.add(at, f"--cluster-etcd: port {port} is not etcd's client port {client}")
    if sorted(hosts) != expected:
        problems.add(at, f"--cluster-etcd names {sorted(hosts)}, not exactly etcd's pods "
                     f"{expected}")
    etcd_labels = etcd["spec"]["template"]["metadata"].get("labels", {})
    if not allowed(policies, "Egress", pod_labels, etcd_labels, ("client", client)):
        problems.add(at, "no NetworkPolicy lets the members reach etcd's client port")


def check_etcd(sts, server, by_kind, where, known, problems):
    at = f"{where} StatefulSet/{sts['metadata']['name']}"
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    server_labels = server["spec"]["template"]["metadata"].get("labels", {})
    replicas = spec.get("replicas", 1)
    if replicas < 3 or replicas % 2 == 0:
        problems.add(at, f"replicas {replicas}: etcd needs an odd number, at least 3, to keep a "
                     "quorum with a member down")
    if spec.get("podManagementPolicy") != "Parallel":
        problems.add(at, "podManagementPolicy must be Parallel: a fresh member is ready only "
                     "with a quorum, so OrderedReady never starts the second")
    if not matches(spec["selector"].get("matchLabels"), pod_labels):
        problems.add(at, "selector does not match the pod template's labels")
    if selector_selects(spec["selector"], server_labels) or \
            selector_selects(server["spec"]["selector"], pod_labels):
        problems.add(at, "the etcd and server selectors overlap")
    svc = next((s for s in by_kind["Service"]
                if s["metadata"]["name"] == spec.get("serviceName")), None)
    if svc is None:
        problems.add(at, f"serviceName {spec.get('serviceName')} names no Service")
        return
    sat = f"{where} Service/{svc['metadata']['name']}"
    if svc["spec"].get("clusterIP") != "None":
        problems.add(sat, "must be headless: it names each etcd member")
    if not svc["spec"].get("publishNotReadyAddresses"):
        problems.add(sat, "must publish members not ready yet: they need one another's names "
                     "to form a quorum")
    if not matches(svc["spec"].get("selector"), pod_labels):
        problems.add(sat, "selector does not match the etcd pod")
    if len(pod["containers"]) != 1:
        problems.add(at, "expected one container")
        return
    c = pod["containers"][0]
    image = c.get("image", "")
    if not re.search(r":v?3\.4\.\d+(-\d+)?$", image):
        problems.add(at, f"image {image!r}: pin an etcd 3.4 release (the server's etcd client "
                     "is built from 3.4's protos and tested against 3.4)")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if "client" not in ports or "peer" not in ports:
        problems.add(at, "needs container ports named client and peer")
        return
    env = resolve_env(c, {}, at, problems)
    args = c.get("command", [])[1:] + c.get("args", [])
    flags = parse_args(args, underscore=False)
    if known is not None and known.get("etcd"):
        for flag in flags:
            if flag not in known["etcd"]:
                problems.add(at, f"--{flag} is not a flag of etcd")
    for arg in args:
        expand(arg, env, at, problems)
    pod_name = field_var(env, "metadata.name")
    service = svc["metadata"]["name"]
    host = f"{pod_name}.{service}"
    expect = {
        "name": pod_name,
        "initial-advertise-peer-urls": f"http://{host}:{ports['peer']}",
        "advertise-client-urls": f"http://{host}:{ports['client']}",
        "initial-cluster-state": "new",
    }
    for flag, value in expect.items():
        if pod_name is None or flags.get(flag) != value:
            problems.add(at, f"--{flag} {flags.get(flag)!r} must be {value!r}")
    for flag, pname in (("listen-client-urls", "client"), ("listen-peer-urls", "peer"),
                        ("listen-metrics-urls", "metrics")):
        if flag in flags and port_of(flags[flag]) != ports.get(pname):
            problems.add(at, f"--{flag} {flags[flag]} is not the container port {pname}")
    members = {}
    for entry in flags.get("initial-cluster", "").split(","):
        member, _, url = entry.partition("=")
        members[member] = url
    expected = {f"{name}-{i}": f"http://{name}-{i}.{service}:{ports['peer']}"
                for i in range(replicas)}
    if members != expected:
        problems.add(at, f"--initial-cluster {flags.get('initial-cluster')!r} must name exactly "
                     f"the {replicas} pods: {expected}")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    data_dir = flags.get("data-dir", "")
    if not any(n in claims and data_dir.startswith(p.rstrip("/") + "/")
               for n, p in mounts.items()):
        problems.add(at, f"--data-dir {data_dir!r} is not on a persistent volume")
    readiness = c.get("readinessProbe", {}).get("httpGet", {})
    if readiness.get("path") != "/health":
        problems.add(at, "readinessProbe must ask /health (503 without a quorum)")
    liveness = c.get("livenessProbe")
    if liveness is None:
        problems.add(at, "no livenessProbe")
    elif liveness.get("httpGet", {}).get("path", "").startswith("/health"):
        problems.add(at, "livenessProbe on /health restarts every member when the quorum is lost")
    for probe in (readiness, (liveness or {}).get("httpGet", {})):
        if probe and probe.get("port") not in {**ports, **{v: v for v in ports.values()}}:
            problems.add(at, f"a probe asks port {probe.get('port')}, not a container port")
    check_security_and_resources(pod, c, at, problems)

    pdbs = [p for p in by_kind["PodDisruptionBudget"]
            if matches(p["spec"].get("selector", {}).get("matchLabels"), pod_labels)]
    if len(pdbs) != 1 or not one_disruption(pdbs[0], replicas):
        problems.add(at, "needs one PodDisruptionBudget with maxUnavailable: 1 (a quorum "
                     "survives one member down)")

    policies = by_kind["NetworkPolicy"]
    npat = f"{where} NetworkPolicy (etcd)"
    client, peer = ("client", ports["client"]), ("peer", ports["peer"])
    if not allowed(policies, "Ingress", pod_labels, server_labels, client):
        problems.add(npat, "the curation servers cannot reach etcd's client port")
    for port in (client, peer):
        if not allowed(policies, "Ingress", pod_labels, pod_labels, port):
            problems.add(npat, f"etcd members cannot reach one another's port {port[0]}")
        if allowed(policies, "Egress", pod_labels, pod_labels, port) is False:
            problems.add(npat, f"etcd members cannot send to one another's port {port[0]}")
        if allowed(policies, "Ingress", pod_labels, STRANGER_POD, port) or \
                allowed(policies, "Ingress", pod_labels, CLIENT_POD, port, same_namespace=False,
                        namespace_labels=CLIENT_NAMESPACE):
            problems.add(npat, f"a pod that is neither server nor etcd reaches port {port[0]}")
    if allowed(policies, "Ingress", pod_labels, server_labels, peer):
        problems.add(npat, "the servers reach etcd's peer (raft) port")
    if not allowed(policies, "Egress", pod_labels, None, (None, 53), "UDP"):
        problems.add(npat, "etcd members cannot resolve one another's names (port 53)")


# ---------------------------------------------------------------------------------------


def render(kubectl, directory):
    result = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: kubectl kustomize {directory}:\n{result.stderr}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def check_rendering(objects, where, is_base, known):
    problems = Problems()
    for obj in objects:
        check_object(obj, f"{where} {obj.get('kind')}/{obj.get('metadata', {}).get('name')}",
                     problems)
    if not problems.items:
        check_invariants(objects, where, is_base, known, problems)
    return problems.items


def find(objects, kind, component=None, name=None):
    return next(o for o in objects if o["kind"] == kind and
                (component is None or component_of(o) == component) and
                (name is None or o["metadata"]["name"] == name))


def container(sts):
    return sts["spec"]["template"]["spec"]["containers"][0]


def set_arg(sts, flag, value):
    args = container(sts)["args"]
    index = next(i for i, a in enumerate(args) if a.startswith(f"--{flag}="))
    args[index] = f"--{flag}={value}"


def self_test(renderings, known):
    """The checker must catch the mistakes it exists for, or its passes mean nothing."""
    def broken(where, mutate):
        """Whether the mutation adds a problem to those of the rendering as it is."""
        before = set(check_rendering(renderings[where], "self-test", where == "base", known))
        objects = copy.deepcopy(renderings[where])
        mutate(objects)
        return set(check_rendering(objects, "self-test", where == "base", known)) - before

    def server(objects):
        return find(objects, "StatefulSet", SERVER)

    def etcd(objects):
        return find(objects, "StatefulSet", ETCD)

    def client_rule_with_server_labels(objects):
        # What kustomize's commonLabels make of a client rule written with matchLabels.
        labels = dict(server(objects)["spec"]["template"]["metadata"]["labels"])
        labels["curation.dev/client"] = "true"
        rule = find(objects, "NetworkPolicy", name="curation")["spec"]["ingress"][0]
        rule["from"][0]["podSelector"] = {"matchLabels": labels}

    def drop_etcd_endpoint(objects):
        cm = next(o for o in objects if o["kind"] == "ConfigMap" and
                  "etcd-endpoints" in o.get("data", {}))
        cm["data"]["etcd-endpoints"] = cm["data"]["etcd-endpoints"].rsplit(",", 1)[0]

    def drop_initial_member(objects):
        flag = next(a for a in container(etcd(objects))["args"]
                    if a.startswith("--initial-cluster="))
        set_arg(etcd(objects), "initial-cluster", flag.split("=", 1)[1].rsplit(",", 1)[0])

    def open_etcd(objects):
        find(objects, "NetworkPolicy", name="curation-etcd")["spec"]["ingress"][0].pop("from")

    cases = {
        "base": {
            "misspelt field": lambda o: container(server(o)).update(
                readinesProbe=container(server(o)).pop("readinessProbe")),
            "missing required field": lambda o: container(server(o)).pop("name"),
            "unquoted boolean label": lambda o: server(o)["metadata"]["labels"].update(x=True),
            "second replica": lambda o: server(o)["spec"].update(replicas=2),
            "grace period too short": lambda o: server(o)["spec"]["template"]["spec"].update(
                terminationGracePeriodSeconds=1),
            "probe port name": lambda o: container(server(o))["livenessProbe"].update(
                grpc={"port": "grpc"}),
            "client rule needing the server's labels": client_rule_with_server_labels,
            "egress opened": lambda o: find(o, "NetworkPolicy", name="curation")["spec"].update(
                egress=[{}]),
        },
        "overlays/cluster": {
            "two members": lambda o: server(o)["spec"].update(replicas=2),
            "member name not the pod's": lambda o: set_arg(server(o), "member", "curation"),
            "advertise under the client Service": lambda o: set_arg(
                server(o), "advertise",
                "$(POD_NAME).curation.$(POD_NAMESPACE).svc.cluster.local:50051"),
            "advertise on the metrics port": lambda o: set_arg(
                server(o), "advertise",
                "$(POD_NAME).curation-members.$(POD_NAMESPACE).svc.cluster.local:9090"),
            "an etcd pod missing from --cluster-etcd": drop_etcd_endpoint,
            "an etcd pod missing from --initial-cluster": drop_initial_member,
            "etcd of two": lambda o: etcd(o)["spec"].update(replicas=2),
            "etcd OrderedReady": lambda o: etcd(o)["spec"].pop("podManagementPolicy"),
            "etcd liveness on /health": lambda o: container(etcd(o))["livenessProbe"].update(
                httpGet={"path": "/health", "port": "metrics"}),
            "members' Service hiding starting members": lambda o: find(
                o, "Service", name="curation-members")["spec"].pop("publishNotReadyAddresses"),
            "members shut out of one another": lambda o: o.remove(
                find(o, "NetworkPolicy", name="curation-members")),
            "members shut out of etcd": lambda o: o.remove(
                find(o, "NetworkPolicy", name="curation-etcd-clients")),
            "etcd open to every pod": open_etcd,
            "no etcd budget": lambda o: o.remove(
                find(o, "PodDisruptionBudget", name="curation-etcd")),
        },
    }
    if known is not None:
        cases["overlays/cluster"]["misspelt argument flag"] = lambda o: container(
            server(o))["args"].append("--cluster-etc=x")
    missed = []
    for where, by_name in cases.items():
        if where not in renderings:
            missed.append(f"{where} (not rendered)")
            continue
        missed += [f"{where}: {name}" for name, mutate in by_name.items()
                   if not broken(where, mutate)]
    return missed


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    source = os.path.abspath(sys.argv[1])
    known = None
    if len(sys.argv) == 3:
        helpfull = subprocess.run([sys.argv[2], "--helpfull"], capture_output=True, text=True)
        known = {"server": set(re.findall(r"^\s+--(\w+) \(", helpfull.stdout + helpfull.stderr,
                                          re.M))}
        if "data_dir" not in known["server"]:
            sys.exit(f"FAIL: could not read the flags of {sys.argv[2]}")
        # etcd's flags too where Debian's etcd-server is installed (the cluster tests need it).
        etcd = shutil.which("etcd")
        if etcd:
            help_ = subprocess.run([etcd, "--help"], capture_output=True, text=True)
            known["etcd"] = set(re.findall(r"^\s+--([a-z0-9-]+)", help_.stdout + help_.stderr,
                                           re.M))
            print(f"etcd flags from {etcd}: {len(known['etcd'])}")
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
            problems = check_rendering(objects, where, is_base, known)
            kinds = ", ".join(sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
            if problems:
                failed += 1
                print(f"FAIL {where}:\n  " + "\n  ".join(problems))
            else:
                passed += 1
                print(f"ok   {where}: {len(objects)} objects valid ({kinds})")
        missed = self_test(renderings, known)
        if missed:
            failed += 1
            print(f"FAIL self-test: the checker let through: {', '.join(missed)}")
        else:
            passed += 1
            print("ok   self-test: broken copies of the base and overlays/cluster are caught")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
