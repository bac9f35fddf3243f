#!/usr/bin/python3
"""Checks rendered guestlist Kubernetes manifests without a cluster.

Reads the output of `kubectl kustomize deploy/k8s/overlays/<name>` (one
multi-document YAML file) and the C++ sources (to learn which flags, and
so which GUESTLIST_* environment variables, each binary reads), and
reports every problem on its own line. Exit status: 0 clean, 1 problems,
2 bad usage or unreadable input.

What is checked, per Deployment (pod-level checks also for StatefulSets):
  - readiness and liveness probes with a handler whose port exists;
  - resource requests and limits for cpu and memory, requests <= limits;
  - runAsNonRoot, readOnlyRootFilesystem, allowPrivilegeEscalation false,
    capabilities drop ALL, seccompProfile RuntimeDefault, no host
    namespaces, no privileged containers;
  - a PodDisruptionBudget that selects it and allows a disruption, an
    HorizontalPodAutoscaler that targets it, a Service that selects it,
    a NetworkPolicy (with a non-empty selector) that selects it, and a
    namespace-wide default-deny policy;
  - the caller matrix of docs/OPERATIONS.md: each service accepts
    exactly its callers, callers may reach it, and only the gateway
    accepts traffic from outside the namespace;
  - every environment variable is one its binary reads
    (GUESTLIST_<SERVICE>_<FLAG> or GUESTLIST_<FLAG> for an ABSL_FLAG
    defined in common/ or services/<service>/), and no secret-looking
    variable has a literal value;
  - terminationGracePeriodSeconds > preStop sleep + --grace_period;
  - images carry an explicit tag or digest, not :latest;
  - optional: --min-replicas N, --require-tls, and --docs FILE (the
    operations guide names every flag).
And overall: no Secret object carries data or stringData.

Uses only the standard library and PyYAML (Debian: python3-yaml).
"""

import argparse
import os
import re
import sys

import yaml

# Who may call whom (docs/OPERATIONS.md, "Network policies"). "*" means
# from anywhere, including outside the namespace.
CALLERS = {
    "identity": {"gateway", "membership", "notification"},
    "membership": {"gateway", "identity", "notification"},
    "notification": {"gateway", "identity"},
    "gateway": {"*"},
}

# Names whose values are secrets and so must come from a Secret.
SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|DATABASE_URL|SMTP_URL|_KEY)$")

FLAG_RE = re.compile(
    r"ABSL_FLAG\s*\(\s*([^,]+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*,\s*(.*?)\s*,\s*\"",
    re.S)


class Report:
    """Collects problems and warnings, printed in a stable order."""

    def __init__(self):
        self.errors = []
        self.warnings = []

    def error(self, where, message):
        self.errors.append(f"ERROR {where}: {message}")

    def warn(self, where, message):
        self.warnings.append(f"WARN {where}: {message}")


# ---------------------------------------------------------------- sources

def scan_flags(roots):
    """Returns ({service or '': {flag: default text}}, [scanned files])."""
    flags = {}
    files = []
    for root in roots:
        for top in ("common", "services"):
            base = os.path.join(root, top)
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = [d for d in dirnames if d != "testing"]
                for name in filenames:
                    if not name.endswith((".cc", ".h")):
                        continue
                    if name.endswith(("_test.cc", "_fuzz.cc")):
                        continue
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, root).replace(os.sep, "/")
                    parts = rel.split("/")
                    owner = parts[1] if parts[0] == "services" else ""
                    with open(path, encoding="utf-8", errors="replace") as f:
                        text = f.read()
                    files.append(rel)
                    for m in FLAG_RE.finditer(text):
                        flags.setdefault(owner, {})[m.group(2)] = m.group(3)
    return flags, files


def flags_of(flags, service):
    merged = dict(flags.get("", {}))
    merged.update(flags.get(service, {}))
    return merged


def env_names(service, flag):
    """The variables a binary reads for a flag (common/config.cc), in order."""
    return [f"GUESTLIST_{service.upper()}_{flag.upper()}",
            f"GUESTLIST_{flag.upper()}"]


def env_to_flag(service, env, known):
    """Maps an env name to the flag it sets for this service, or None."""
    for flag in sorted(known):
        if env in env_names(service, flag):
            return flag
    return None


DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(text):
    """absl duration text ("10s", "1m30s", "500ms") -> seconds, or None."""
    text = str(text).strip()
    if text in ("0", "inf"):
        return 0.0 if text == "0" else None
    pos, total = 0, 0.0
    for m in DURATION_RE.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


def default_duration(default_text):
    """absl::Seconds(10) / absl::Milliseconds(500) -> seconds, or None."""
    m = re.match(r"absl::(Seconds|Milliseconds|Minutes)\(\s*(\d+)\s*\)",
                 default_text or "")
    if not m:
        return None
    return float(m.group(2)) * {"Seconds": 1, "Milliseconds": 1e-3,
                                "Minutes": 60}[m.group(1)]


# ---------------------------------------------------------------- helpers

def quantity(text, cpu):
    text = str(text)
    if cpu:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * factor
    return float(text)


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels/matchExpressions) against labels."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def is_empty_selector(selector):
    return not (selector or {}).get("matchLabels") and \
        not (selector or {}).get("matchExpressions")


def ns_of(obj):
    return (obj.get("metadata") or {}).get("namespace") or "default"


def name_of(obj):
    return (obj.get("metadata") or {}).get("name") or "?"


def where(obj):
    return f"{obj.get('kind')}/{name_of(obj)}"


def port_numbers(container):
    ports = {}
    for p in container.get("ports") or []:
        if "containerPort" in p:
            ports[p["containerPort"]] = p.get("name")
    return ports


def resolve_port(container, port):
    """A probe/service port (number or name) -> number, or None."""
    ports = port_numbers(container)
    if isinstance(port, int):
        return port if port in ports else None
    for number, pname in ports.items():
        if pname == port:
            return number
    return None


# ---------------------------------------------------------------- checks

def check_probes(rep, w, container):
    for kind in ("readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if not probe:
            rep.error(w, f"container {container.get('name')} has no {kind}")
            continue
        handlers = [h for h in ("grpc", "httpGet", "tcpSocket", "exec")
                    if h in probe]
        if len(handlers) != 1:
            rep.error(w, f"{kind} needs exactly one handler, has {handlers}")
            continue
        handler = probe[handlers[0]]
        if handlers[0] == "grpc":
            if not isinstance(handler.get("port"), int) or \
                    handler["port"] not in port_numbers(container):
                rep.error(w, f"{kind} grpc port {handler.get('port')} is not "
                          "a numbered containerPort")
        elif handlers[0] in ("httpGet", "tcpSocket"):
            if resolve_port(container, handler.get("port")) is None:
                rep.error(w, f"{kind} port {handler.get('port')} is not a "
                          "containerPort")
            if handlers[0] == "httpGet" and not handler.get("path"):
                rep.error(w, f"{kind} httpGet has no path")


def check_resources(rep, w, container):
    res = container.get("resources") or {}
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(part) or {}):
                rep.error(w, f"container {container.get('name')} has no "
                          f"resources.{part}.{r}")
    for r in ("cpu", "memory"):
        try:
            req = quantity(res["requests"][r], r == "cpu")
            lim = quantity(res["limits"][r], r == "cpu")
        except (KeyError, TypeError, ValueError):
            continue
        if req > lim:
            rep.error(w, f"{r} request exceeds its limit")


def check_security(rep, w, pod, container):
    psc = pod.get("securityContext") or {}
    csc = container.get("securityContext") or {}

    def effective(key):
        return csc[key] if key in csc else psc.get(key)

    cname = container.get("name")
    if effective("runAsNonRoot") is not True:
        rep.error(w, f"container {cname}: runAsNonRoot is not true")
    if effective("runAsUser") == 0:
        rep.error(w, f"container {cname}: runAsUser is 0 (root)")
    if csc.get("readOnlyRootFilesystem") is not True:
        rep.error(w, f"container {cname}: readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        rep.error(w, f"container {cname}: allowPrivilegeEscalation is not false")
    if csc.get("privileged"):
        rep.error(w, f"container {cname}: privileged")
    caps = csc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        rep.error(w, f"container {cname}: capabilities do not drop ALL")
    if caps.get("add"):
        rep.error(w, f"container {cname}: adds capabilities {caps['add']}")
    seccomp = (effective("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        rep.error(w, f"container {cname}: seccompProfile is not RuntimeDefault")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            rep.error(w, f"{host} is set")


def check_image(rep, w, container):
    image = container.get("image") or ""
    last = image.rsplit("/", 1)[-1]
    if "@" in image:
        return
    if ":" not in last:
        rep.error(w, f"image {image!r} has no tag (set one in the overlay)")
    elif last.endswith(":latest"):
        rep.error(w, f"image {image!r} uses :latest")


def container_env(rep, w, container, configmaps, namespace):
    """[(name, literal value or None, source)] for a container."""
    out = []
    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix") or ""
        if "secretRef" in ef:
            rep.error(w, "envFrom secretRef hides which variables are set; use "
                      "env[].valueFrom.secretKeyRef")
            continue
        ref = ef.get("configMapRef") or {}
        cm = configmaps.get((namespace, ref.get("name")))
        if cm is None:
            if not ref.get("optional"):
                rep.error(w, f"envFrom ConfigMap {ref.get('name')} is not in "
                          "the rendered manifests")
            continue
        for k, v in (cm.get("data") or {}).items():
            out.append((prefix + k, str(v), f"ConfigMap/{ref.get('name')}"))
    for e in container.get("env") or []:
        if "valueFrom" in e:
            out.append((e["name"], None, "valueFrom"))
        else:
            out.append((e["name"], str(e.get("value", "")), "value"))
    return out


def check_env(rep, w, service, env, flags):
    known = flags_of(flags, service)
    for name, value, source in env:
        flag = env_to_flag(service, name, known)
        if flag is None:
            if not name.startswith("GUESTLIST_"):
                rep.error(w, f"env {name} ({source}) is not a GUESTLIST_* "
                          f"variable; the {service} binary reads no other")
            else:
                rep.error(w, f"env {name} ({source}) is read by no binary: "
                          f"{service} has no such flag (it reads "
                          f"GUESTLIST_{service.upper()}_<FLAG> or "
                          f"GUESTLIST_<FLAG> for: "
                          f"{', '.join(sorted(known)) or 'none'})")
        if value is not None and SECRET_NAME.search(name) and \
                not name.endswith("_FILE") and value != "":
            rep.error(w, f"env {name} has a literal value ({source}); take it "
                      "from a Secret (valueFrom.secretKeyRef)")


def env_value(service, env, flag):
    """The literal value the binary would read for a flag, if any."""
    values = {n: v for n, v, _ in env}
    for n in env_names(service, flag):
        if n in values:
            return values[n]
    return None


def arg_value(container, flag):
    args = list(container.get("command") or []) + list(container.get("args") or [])
    for i, a in enumerate(args):
        if a.startswith(f"--{flag}="):
            return a.split("=", 1)[1]
        if a == f"--{flag}" and i + 1 < len(args):
            return args[i + 1]
    return None


def prestop_seconds(container):
    pre = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return float((pre["sleep"] or {}).get("seconds", 0))
    cmd = (pre.get("exec") or {}).get("command") or []
    for i, part in enumerate(cmd):
        if os.path.basename(str(part)) == "sleep" and i + 1 < len(cmd):
            try:
                return float(cmd[i + 1])
            except ValueError:
                return 0.0
        m = re.search(r"\bsleep\s+(\d+)", str(part))
        if m:
            return float(m.group(1))
    return 0.0


def check_grace(rep, w, pod, service, container, env, flags):
    known = flags_of(flags, service)
    drain = None
    text = arg_value(container, "grace_period") or \
        env_value(service, env, "grace_period")
    if text is not None:
        drain = parse_duration(text)
        if drain is None:
            rep.error(w, f"grace_period {text!r} is not an absl duration")
            return
    elif "grace_period" in known:
        drain = default_duration(known["grace_period"])
    if drain is None:
        rep.warn(w, "could not tell the drain (--grace_period); using 10s")
        drain = 10.0
    grace = pod.get("terminationGracePeriodSeconds")
    if grace is None:
        rep.error(w, "terminationGracePeriodSeconds is not set")
        return
    needed = drain + prestop_seconds(container)
    if grace <= needed:
        rep.error(w, f"terminationGracePeriodSeconds {grace} does not exceed "
                  f"preStop + drain ({needed:g}s): in-flight calls get killed")


def check_tls(rep, w, service, container, pod, env):
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = container.get("volumeMounts") or []
    for flag in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        path = env_value(service, env, flag) or arg_value(container, flag)
        if not path:
            rep.error(w, f"TLS required but --{flag} is not set")
            continue
        mount = next((m for m in mounts
                      if path.startswith(m.get("mountPath", "").rstrip("/") + "/")),
                     None)
        if mount is None or "secret" not in volumes.get(mount.get("name"), {}):
            rep.error(w, f"--{flag}={path} is not on a mounted Secret volume")


def rule_allows_peer(rule_peers, labels):
    """Whether a from/to list admits a pod with these labels (same ns)."""
    if not rule_peers:
        return True
    for peer in rule_peers:
        if "ipBlock" in peer:
            continue
        if "namespaceSelector" in peer and "podSelector" not in peer:
            if is_empty_selector(peer["namespaceSelector"]):
                return True
            continue
        pod_sel = peer.get("podSelector")
        if pod_sel is not None and (is_empty_selector(pod_sel) or
                                    selector_matches(pod_sel, labels)):
            return True
    return False


def rule_allows_port(ports, number):
    if not ports:
        return True
    return any(p.get("port") in (number, None) for p in ports)


def exposed_outside(rule):
    peers = rule.get("from")
    if not peers:
        return True
    return any("ipBlock" in p or "namespaceSelector" in p for p in peers)


def policy_types(policy):
    """policyTypes, with the API server's default when it is left out."""
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def rules_for(policies, labels, direction):
    """The rules of one direction that apply to a pod with these labels.

    A pod no policy of that direction selects is not isolated: that is
    returned as one rule admitting everything.
    """
    key = "ingress" if direction == "Ingress" else "egress"
    selecting = [p for p in policies
                 if direction in policy_types(p) and
                 (is_empty_selector((p.get("spec") or {}).get("podSelector")) or
                  selector_matches((p.get("spec") or {}).get("podSelector") or {},
                                   labels))]
    if not selecting:
        return [{}]
    return [r for p in selecting for r in (p.get("spec") or {}).get(key) or []]


def check_network(rep, docs, deployments, report_where):
    by_ns = {}
    for p in docs:
        if p.get("kind") == "NetworkPolicy":
            by_ns.setdefault(ns_of(p), []).append(p)
    for ns in sorted({ns_of(d) for d in deployments}):
        if not any(is_empty_selector((p.get("spec") or {}).get("podSelector"))
                   and {"Ingress", "Egress"} <= policy_types(p)
                   and not (p.get("spec") or {}).get("ingress")
                   and not (p.get("spec") or {}).get("egress")
                   for p in by_ns.get(ns, [])):
            rep.error(f"Namespace/{ns}", "no default-deny NetworkPolicy "
                      "(empty podSelector, Ingress and Egress, no rules)")

    info = {}
    for d in deployments:
        tmpl = d["spec"]["template"]
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        svc = labels.get("app.kubernetes.io/name", name_of(d))
        ports = set()
        for c in tmpl["spec"].get("containers") or []:
            ports |= set(port_numbers(c))
        info[svc] = (d, labels, ports)

    for svc, (d, labels, ports) in info.items():
        w = report_where(d)
        pols = by_ns.get(ns_of(d), [])
        if not any(not is_empty_selector((p.get("spec") or {}).get("podSelector"))
                   and selector_matches((p.get("spec") or {}).get("podSelector"), labels)
                   for p in pols):
            rep.error(w, "no NetworkPolicy selects it (beyond namespace-wide ones)")
        ingress_rules = rules_for(pols, labels, "Ingress")
        allowed = CALLERS.get(svc)
        if allowed is None:
            continue
        if "*" not in allowed and any(exposed_outside(r) for r in ingress_rules):
            rep.error(w, "reachable from outside the namespace; only the "
                      "gateway may be")
        if "*" in allowed and not any(exposed_outside(r) for r in ingress_rules):
            rep.error(w, "not reachable from outside the namespace")
        for other, (od, olabels, _) in info.items():
            if other == svc:
                continue
            may_in = any(rule_allows_peer(r.get("from"), olabels) and
                         any(rule_allows_port(r.get("ports"), p) for p in ports)
                         for r in ingress_rules)
            if other in allowed and not may_in:
                rep.error(w, f"does not accept calls from its caller {other}")
            if other not in allowed and "*" not in allowed and may_in:
                rep.error(w, f"accepts calls from {other}, which is not one of "
                          f"its callers ({', '.join(sorted(allowed))})")
            if other in allowed:
                egress = rules_for(by_ns.get(ns_of(od), []), olabels, "Egress")
                if not any(rule_allows_peer(r.get("to"), labels) and
                           any(rule_allows_port(r.get("ports"), p) for p in ports)
                           for r in egress):
                    rep.error(report_where(od), f"egress to its peer {svc} is "
                              "not allowed")


def check(docs, flags, args, rep):
    configmaps = {(ns_of(d), name_of(d)): d for d in docs
                  if d.get("kind") == "ConfigMap"}
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    workloads = deployments + [d for d in docs if d.get("kind") == "StatefulSet"]

    for s in docs:
        if s.get("kind") == "Secret" and (s.get("data") or s.get("stringData")):
            rep.error(where(s), "Secret with literal data/stringData in the "
                      "manifests; create it out of band")
    for cm in configmaps.values():
        for k, v in (cm.get("data") or {}).items():
            if SECRET_NAME.search(k.upper()) and not k.upper().endswith("_FILE") and v:
                rep.error(where(cm), f"key {k} looks like a secret; put it in a "
                          "Secret")

    if not deployments:
        rep.error("manifests", "no Deployment found")

    for wl in workloads:
        w = where(wl)
        pod = ((wl.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in pod.get("containers") or []:
            check_probes(rep, w, c)
            check_resources(rep, w, c)
            check_security(rep, w, pod, c)
            check_image(rep, w, c)
        for c in pod.get("initContainers") or []:
            check_resources(rep, w, c)
            check_security(rep, w, pod, c)

    sas = {(ns_of(d), name_of(d)) for d in docs if d.get("kind") == "ServiceAccount"}
    for d in deployments:
        w = where(d)
        ns = ns_of(d)
        spec = d.get("spec") or {}
        tmpl = spec.get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        pod = tmpl.get("spec") or {}
        service = labels.get("app.kubernetes.io/name", name_of(d))
        replicas = spec.get("replicas", 1)
        if not selector_matches(spec.get("selector") or {}, labels):
            rep.error(w, "selector does not match the pod template labels")
        if replicas < args.min_replicas:
            rep.error(w, f"replicas {replicas} < {args.min_replicas}")

        sa = pod.get("serviceAccountName")
        if sa and (ns, sa) not in sas:
            rep.error(w, f"ServiceAccount {sa} is not in the manifests")
        if pod.get("automountServiceAccountToken") is not False:
            rep.error(w, "automountServiceAccountToken is not false")

        pdbs = [p for p in docs if p.get("kind") == "PodDisruptionBudget"
                and ns_of(p) == ns and
                selector_matches((p.get("spec") or {}).get("selector") or {}, labels)]
        if not pdbs:
            rep.error(w, "no PodDisruptionBudget selects it")
        for p in pdbs:
            ps = p.get("spec") or {}
            if isinstance(ps.get("minAvailable"), int) and ps["minAvailable"] >= replicas:
                rep.error(where(p), f"minAvailable {ps['minAvailable']} with "
                          f"{replicas} replica(s) blocks every node drain")
            if ps.get("maxUnavailable") in (0, "0%"):
                rep.error(where(p), "maxUnavailable 0 blocks every node drain")

        hpas = [h for h in docs if h.get("kind") == "HorizontalPodAutoscaler"
                and ns_of(h) == ns
                and ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("kind") == "Deployment"
                and ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == name_of(d)]
        if not hpas:
            rep.error(w, "no HorizontalPodAutoscaler targets it")
        for h in hpas:
            hs = h.get("spec") or {}
            lo, hi = hs.get("minReplicas", 1), hs.get("maxReplicas", 0)
            if lo > hi:
                rep.error(where(h), f"minReplicas {lo} > maxReplicas {hi}")
            if lo < args.min_replicas:
                rep.error(where(h), f"minReplicas {lo} < {args.min_replicas}")
            if not hs.get("metrics"):
                rep.error(where(h), "no metrics to scale on")

        services = [s for s in docs if s.get("kind") == "Service" and ns_of(s) == ns
                    and (s.get("spec") or {}).get("selector")
                    and selector_matches({"matchLabels": s["spec"]["selector"]}, labels)]
        if not services:
            rep.error(w, "no Service selects it")
        containers = pod.get("containers") or []
        for s in services:
            for sp in (s.get("spec") or {}).get("ports") or []:
                target = sp.get("targetPort", sp.get("port"))
                if not any(resolve_port(c, target) for c in containers):
                    rep.error(where(s), f"targetPort {target} is no containerPort")

        for c in containers:
            env = container_env(rep, w, c, configmaps, ns)
            check_env(rep, w, service, env, flags)
            check_grace(rep, w, pod, service, c, env, flags)
            if args.require_tls:
                check_tls(rep, w, service, c, pod, env)

    if deployments:
        check_network(rep, docs, deployments, where)


def check_docs(rep, path, flags):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        rep.error(path, f"cannot read: {e}")
        return
    for owner in sorted(flags):
        for flag in sorted(flags[owner]):
            if not re.search(rf"--{flag}\b", text):
                where_defined = f"services/{owner}" if owner else "common"
                rep.error(os.path.basename(path), f"flag --{flag} ({where_defined}) "
                          "is not documented (add a row to its flag table)")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rendered", help="output of kubectl kustomize")
    parser.add_argument("--sources", action="append", required=True,
                        help="workspace root holding common/ and services/")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--require-tls", action="store_true")
    parser.add_argument("--docs", help="operations guide that must name "
                        "every flag as --<flag>")
    parser.add_argument("--quiet", action="store_true",
                        help="print problems only")
    args = parser.parse_args(argv)

    flags, files = scan_flags(args.sources)
    if "grace_period" not in flags.get("", {}) or \
            "database_url" not in flags.get("", {}):
        print(f"cannot find the shared flags under {args.sources} "
              f"({len(files)} files scanned): wrong --sources?", file=sys.stderr)
        return 2
    try:
        with open(args.rendered, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as e:
        print(f"cannot read {args.rendered}: {e}", file=sys.stderr)
        return 2

    rep = Report()
    check(docs, flags, args, rep)
    if args.docs:
        check_docs(rep, args.docs, flags)
    for line in rep.warnings + rep.errors:
        print(line)
    if not args.quiet:
        total = sum(len(v) for v in flags.values())
        print(f"checked {len(docs)} objects from {args.rendered} against "
              f"{total} flags in {len(files)} source files: "
              f"{len(rep.errors)} problem(s), {len(rep.warnings)} warning(s)")
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
