"""Contract checks on rendered kustomizations (see check-render.sh, which renders them).

Usage: check_render.py WORK_DIR REPO_ROOT. Prints PASS/FAIL lines; exit 1 on any FAIL.
"""
import json
import os
import re
import sys

import yaml

work, repo = sys.argv[1], sys.argv[2]
failures = 0


def check(ok, what, detail=""):
    global failures
    if ok:
        print(f"PASS {what}")
    else:
        failures += 1
        print(f"FAIL {what}{': ' + str(detail) if detail else ''}")


def load(name):
    with open(os.path.join(work, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(docs, kind, name=None, prefix=None):
    out = [d for d in docs if d["kind"] == kind
           and (name is None or d["metadata"]["name"] == name)
           and (prefix is None or re.fullmatch(re.escape(prefix) + r"-[a-z0-9]{10}", d["metadata"]["name"]))]
    return out[0] if len(out) == 1 else None


def key(d):
    n = d["metadata"]["name"]
    n = re.sub(r"-[a-z0-9]{10}$", "-<hash>", n) if d["kind"] == "ConfigMap" else n
    return f'{d["kind"]}/{n}'


NS = "image-scanner"
UPSTREAM_CONFIG = {  # upstream config/manager ConfigMap (spec §13.5); TRIVY_IMAGE checked apart
    "CIS_METRICS_LABELS": "app.kubernetes.io/name",
    "SCAN_INTERVAL": "12h",
    "TRIVY_IMAGE": None,
    "SCAN_JOB_NAMESPACE": "image-scanner",
    "SCAN_JOB_SERVICE_ACCOUNT": "image-scanner-job",
    "SCAN_WORKLOAD_RESOURCES": "deployments.apps,replicasets.apps,statefulsets.apps,daemonsets.apps,cronjobs.batch,jobs.batch",
    "ZAP_ENCODER": "json",
    "ZAP_LOG_LEVEL": "info",
    "ZAP_TIME_ENCODING": "iso8601",
}
# Upstream's SERVER and TIMEOUT; not its SKIP_FILES=/run/image-scanner/trivy: the scan Job skips
# the binary it injects by itself (--skip-dirs), so the key is free for the user.
TRIVY_JOB_CONFIG = {
    "SERVER": "http://trivy.image-scanner.svc.cluster.local",
    "TIMEOUT": "30m",
}
BASE_OBJECTS = {
    "Namespace/image-scanner",
    "CustomResourceDefinition/containerimagescans.stas.statnett.no",
    "CustomResourceDefinition/vulnerabilityexceptions.stas.statnett.no",
    "CustomResourceDefinition/clustervulnerabilityexceptions.stas.statnett.no",
    "ServiceAccount/image-scanner-controller-manager",
    "ServiceAccount/image-scanner-job",
    "ClusterRole/image-scanner-manager-role",
    "ClusterRole/image-scanner-containerimagescan-viewer-role",
    "ClusterRole/image-scanner-containerimagescan-editor-role",
    "ClusterRole/image-scanner-vulnerabilityexception-editor-role",
    "ClusterRole/image-scanner-vulnerabilityexception-viewer-role",
    "ClusterRole/image-scanner-clustervulnerabilityexception-editor-role",
    "ClusterRole/image-scanner-clustervulnerabilityexception-viewer-role",
    "ClusterRoleBinding/image-scanner-manager-rolebinding",
    "ClusterRole/image-scanner-workload-scan-role",
    "ClusterRoleBinding/image-scanner-workload-scan-rolebinding",
    "Role/image-scanner-manager-role",
    "Role/image-scanner-leader-election-role",
    "RoleBinding/image-scanner-manager-rolebinding",
    "RoleBinding/image-scanner-leader-election-rolebinding",
    "RoleBinding/scc-anyuid",
    "ConfigMap/image-scanner-config-<hash>",
    "ConfigMap/trivy-job-config",
    "ConfigMap/trivy-server-config-<hash>",
    "Deployment/image-scanner-controller-manager",
    "StatefulSet/trivy",
    "Service/trivy",
    "NetworkPolicy/trivy",
}
DEFAULT_OBJECTS = BASE_OBJECTS | {
    "PodMonitor/image-scanner-controller-manager-metrics-monitor",
    "PrometheusRule/image-scanner-alerts",
}
# The operator's RBAC, rule by rule: (apiGroups, resources, verbs, resourceNames).
WORKLOADS = [("apps", "deployments,replicasets,statefulsets,daemonsets"), ("batch", "cronjobs,jobs")]
CLUSTER_RULES = {
    ("", "pods", "list,watch", ""),
    ("", "events", "list,watch", ""),
    ("", "nodes", "list,watch", ""),
    ("apps", "daemonsets,deployments,replicasets,statefulsets", "list,watch", ""),
    ("batch", "cronjobs,jobs", "list,watch", ""),
    ("stas.statnett.no", "containerimagescans", "create,delete,get,list,patch,watch", ""),
    ("stas.statnett.no", "containerimagescans/status", "patch", ""),
    ("stas.statnett.no", "clustervulnerabilityexceptions,vulnerabilityexceptions", "list,watch", ""),
    ("stas.statnett.no", "clustervulnerabilityexceptions/status,vulnerabilityexceptions/status", "patch", ""),
    ("", "configmaps", "list,watch", ""),
    ("events.k8s.io", "events", "create,patch", ""),
    ("apiextensions.k8s.io", "customresourcedefinitions", "get", "containerimagescans.stas.statnett.no"),
}
SCAN_NS_RULES = {
    ("batch", "jobs", "create,delete,list,watch", ""),
    ("", "pods/log", "get", ""),
    ("", "events", "list,watch", ""),
    ("", "configmaps", "get,list,watch", "trivy-job-config"),
}
# Scan Jobs in workload namespaces (component workload-scan-jobs): bound cluster-wide by default,
# per namespace in the least-privilege variant.
WORKLOAD_SCAN_RULES = {
    ("batch", "jobs", "create,delete", ""),
    ("", "pods/log", "get", ""),
}
LEADER_RULES = {
    ("coordination.k8s.io", "leases", "create", ""),
    ("coordination.k8s.io", "leases", "get,list,patch,watch", "398aa7bc.statnett.no"),
}


def rules(role):
    return {(",".join(sorted(r.get("apiGroups", []))), ",".join(sorted(r.get("resources", []))),
             ",".join(sorted(r.get("verbs", []))), ",".join(sorted(r.get("resourceNames", []))))
            for r in role.get("rules", [])}


def restricted_problems(pod_spec):
    """Violations of the restricted Pod Security Standard (v1.25+) in a pod spec."""
    p = []
    psc = pod_spec.get("securityContext") or {}
    if pod_spec.get("hostNetwork") or pod_spec.get("hostPID") or pod_spec.get("hostIPC"):
        p.append("host namespaces")
    for v in pod_spec.get("volumes") or []:
        if not set(v) - {"name"} <= {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                     "persistentVolumeClaim", "projected", "secret"}:
            p.append(f"volume {v['name']} type")
    if psc.get("runAsUser") == 0:
        p.append("pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in (pod_spec.get("initContainers") or []) + pod_spec.get("containers", []):
        sc = c.get("securityContext") or {}
        n = c["name"]
        if sc.get("privileged"):
            p.append(f"{n}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            p.append(f"{n}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            p.append(f"{n}: capabilities not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            p.append(f"{n}: capabilities added")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            p.append(f"{n}: runAsNonRoot not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            p.append(f"{n}: runAsUser 0")
        if (sc.get("seccompProfile") or {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            p.append(f"{n}: seccompProfile not RuntimeDefault/Localhost")
        if not sc.get("readOnlyRootFilesystem"):
            p.append(f"{n}: readOnlyRootFilesystem not true (our own rule, beyond restricted)")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                p.append(f"{n}: hostPort")
    return p


# --- default installation ---------------------------------------------------------------------
docs = load("default.yaml")
got = {key(d) for d in docs}
check(got == DEFAULT_OBJECTS, "default: exactly the expected objects",
      f"missing {sorted(DEFAULT_OBJECTS - got)}, unexpected {sorted(got - DEFAULT_OBJECTS)}")
misplaced = [key(d) for d in docs if d["kind"] not in (
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
    and d["metadata"].get("namespace") != NS]
check(not misplaced, f"default: every namespaced object is in namespace {NS}", misplaced)

ns = find(docs, "Namespace", NS) or {"metadata": {}}
labels = ns["metadata"].get("labels", {})
for mode, level in (("enforce", "baseline"), ("warn", "restricted"), ("audit", "restricted")):
    check(labels.get(f"pod-security.kubernetes.io/{mode}") == level,
          f"namespace label pod-security.kubernetes.io/{mode}={level}", labels)

for plural in ("containerimagescans", "vulnerabilityexceptions", "clustervulnerabilityexceptions"):
    crd = find(docs, "CustomResourceDefinition", f"{plural}.stas.statnett.no")
    with open(os.path.join(repo, f"crds/{plural}.stas.statnett.no.yaml")) as f:
        committed = yaml.safe_load(f)
    check(crd == committed, f"CRD rendered equals crds/{plural}.stas.statnett.no.yaml")

cm = find(docs, "ConfigMap", prefix="image-scanner-config") or {"metadata": {"name": "?"}, "data": {}}
sts = find(docs, "StatefulSet", "trivy")
server = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "server")
check(set(cm["data"]) == set(UPSTREAM_CONFIG), "image-scanner-config has the upstream keys (§13.5)",
      sorted(set(cm["data"]) ^ set(UPSTREAM_CONFIG)))
for k, v in UPSTREAM_CONFIG.items():
    if v is not None:
        check(cm["data"].get(k) == v, f"image-scanner-config {k}={v}", cm["data"].get(k))
check(cm["data"].get("TRIVY_IMAGE") == server["image"],
      "image-scanner-config TRIVY_IMAGE is the trivy server's image", (cm["data"].get("TRIVY_IMAGE"), server["image"]))
check(re.match(r"ghcr\.io/aquasecurity/trivy:0\.74\.0@sha256:[0-9a-f]{64}$", server["image"]),
      "trivy server image is 0.74.0 pinned by digest", server["image"])
tjc = find(docs, "ConfigMap", "trivy-job-config") or {"data": {}}
check(tjc["data"] == TRIVY_JOB_CONFIG, "trivy-job-config = upstream SERVER, TIMEOUT (no SKIP_FILES)", tjc["data"])

dep = find(docs, "Deployment", "image-scanner-controller-manager")
pod = dep["spec"]["template"]["spec"]
mgr = pod["containers"][0]
check(len(pod["containers"]) == 1 and mgr["name"] == "manager", "Deployment has one container 'manager'")
check(mgr.get("command") == ["/image-scanner-operator"] and mgr.get("args") == ["--leader-elect"],
      "manager runs /image-scanner-operator --leader-elect", (mgr.get("command"), mgr.get("args")))
check(mgr.get("envFrom") == [{"configMapRef": {"name": cm["metadata"]["name"]}}],
      "manager envFrom the generated image-scanner-config", mgr.get("envFrom"))
env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in mgr.get("env", [])}
check(env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"},
      "manager env POD_NAME/POD_NAMESPACE from the downward API", env)
ports = {p["name"]: p["containerPort"] for p in mgr.get("ports", [])}
check(ports == {"metrics": 8080, "health": 8081}, "manager ports metrics 8080, health 8081", ports)
check(mgr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
      and mgr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081},
      "probes /healthz and /readyz on 8081")
check(mgr.get("resources") == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
      "manager resources: requests 50m/64Mi, limits 500m/256Mi", mgr.get("resources"))
check(pod.get("serviceAccountName") == "image-scanner-controller-manager", "Deployment runs as SA image-scanner-controller-manager")
check(dep["spec"]["selector"] == {"matchLabels": {"control-plane": "image-scanner"}},
      "Deployment selector is the Go operator's (control-plane: image-scanner)", dep["spec"]["selector"])
# The operator image is named in one place: the images: entry of the operator component.
op_img = yaml.safe_load(open(os.path.join(repo, "kustomize/components/operator/kustomization.yaml")))["images"][0]
check(mgr["image"] == f'{op_img["newName"]}@{op_img["digest"]}',
      "operator image is the operator component's images: entry (newName@digest)", (mgr["image"], op_img))
# GHCR links a package to the repository of the same name: github.com/statnett/image-scanner
# publishes ghcr.io/statnett/image-scanner (ghcr.io/statnett/image-scanner-operator is the Go
# operator's package).
check(op_img["newName"] == "ghcr.io/statnett/image-scanner",
      "operator image name is ghcr.io/statnett/image-scanner (this repository's package)", op_img["newName"])
probs = restricted_problems(pod)
check(not probs, "operator pod meets the restricted Pod Security Standard", probs)
psc = pod.get("securityContext", {})
check(psc.get("runAsUser") == 65532 and psc.get("runAsNonRoot") is True,
      "operator pod runs as uid 65532, runAsNonRoot", psc)
probs = restricted_problems(sts["spec"]["template"]["spec"])
check(not probs, "trivy server pod meets the restricted Pod Security Standard", probs)
check(sts["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "trivy", "app.kubernetes.io/component": "server"}}
      and sts["spec"]["serviceName"] == "trivy"
      and [v["metadata"]["name"] for v in sts["spec"].get("volumeClaimTemplates", [])] == ["data"],
      "trivy StatefulSet selector/serviceName/volumeClaimTemplates are the Go operator's (immutable fields)")

np = find(docs, "NetworkPolicy", "trivy")
check(np["spec"]["podSelector"] == {"matchLabels": sts["spec"]["selector"]["matchLabels"]}
      and np["spec"]["policyTypes"] == ["Ingress"]
      and np["spec"]["ingress"] == [{
          "from": [{"namespaceSelector": {},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "image-scanner",
                                                     "app.kubernetes.io/name": "trivy"}}}],
          "ports": [{"port": 4954, "protocol": "TCP"}]}],
      "NetworkPolicy trivy admits only scan pods (of any namespace: workload placement), on TCP 4954",
      np["spec"])
svc = find(docs, "Service", "trivy")
check(svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"], "Service trivy selects the trivy server")

cr = find(docs, "ClusterRole", "image-scanner-manager-role")
check(rules(cr) == CLUSTER_RULES, "ClusterRole image-scanner-manager-role has exactly the documented rules",
      f"extra {rules(cr) - CLUSTER_RULES}, missing {CLUSTER_RULES - rules(cr)}")
role = find(docs, "Role", "image-scanner-manager-role")
check(rules(role) == SCAN_NS_RULES and role["metadata"]["namespace"] == "image-scanner",
      "Role image-scanner-manager-role (scan namespace) has exactly the documented rules",
      f"extra {rules(role) - SCAN_NS_RULES}, missing {SCAN_NS_RULES - rules(role)}")
le = find(docs, "Role", "image-scanner-leader-election-role")
check(rules(le) == LEADER_RULES, "Role image-scanner-leader-election-role: Leases only, by name where possible",
      f"extra {rules(le) - LEADER_RULES}, missing {LEADER_RULES - rules(le)}")
wl = find(docs, "ClusterRole", "image-scanner-workload-scan-role") or {"metadata": {"name": "?"}, "rules": []}
check(rules(wl) == WORKLOAD_SCAN_RULES,
      "ClusterRole image-scanner-workload-scan-role: create/delete Jobs, read pod logs, nothing else",
      f"extra {rules(wl) - WORKLOAD_SCAN_RULES}, missing {WORKLOAD_SCAN_RULES - rules(wl)}")
tjc_rule = [r for r in role.get("rules", []) if "configmaps" in r.get("resources", [])]
check(tjc_rule and all(r.get("resourceNames") == [tjc.get("metadata", {}).get("name")] for r in tjc_rule),
      "scan namespace Role: configmaps only by the name of the rendered trivy-job-config", tjc_rule)
for d in (cr, role, le, wl):
    flat = json.dumps(d["rules"])
    check("secrets" not in flat and '"*"' not in flat, f'{d["kind"]}/{d["metadata"]["name"]}: no secrets, no wildcards')
sa = {"kind": "ServiceAccount", "name": "image-scanner-controller-manager", "namespace": NS}
OPERATOR_BINDINGS = {  # (binding kind, binding namespace, role kind, role name)
    ("ClusterRoleBinding", None, "ClusterRole", "image-scanner-manager-role"),
    ("ClusterRoleBinding", None, "ClusterRole", "image-scanner-workload-scan-role"),
    ("RoleBinding", NS, "Role", "image-scanner-manager-role"),
    ("RoleBinding", NS, "Role", "image-scanner-leader-election-role"),
}


def operator_bindings(docs):
    """What the operator's ServiceAccount is bound to in a rendering, and bindings with other subjects."""
    bound, shared = set(), []
    for b in docs:
        if b["kind"] in ("ClusterRoleBinding", "RoleBinding") and sa in b.get("subjects", []):
            bound.add((b["kind"], b["metadata"].get("namespace"), b["roleRef"]["kind"], b["roleRef"]["name"]))
            if b["subjects"] != [sa]:
                shared.append(key(b))
    return bound, shared


bound, shared = operator_bindings(docs)
check(bound == OPERATOR_BINDINGS and not shared,
      "the operator SA is bound to exactly the manager, workload scan, scan namespace and leader-election roles",
      f"extra {bound - OPERATOR_BINDINGS}, missing {OPERATOR_BINDINGS - bound}, shared subjects {shared}")
for kind, name, ref in (("ClusterRoleBinding", "image-scanner-manager-rolebinding", "image-scanner-manager-role"),
                        ("ClusterRoleBinding", "image-scanner-workload-scan-rolebinding", "image-scanner-workload-scan-role"),
                        ("RoleBinding", "image-scanner-manager-rolebinding", "image-scanner-manager-role"),
                        ("RoleBinding", "image-scanner-leader-election-rolebinding", "image-scanner-leader-election-role")):
    b = find(docs, kind, name)
    check(b and b["subjects"] == [sa] and b["roleRef"]["name"] == ref, f"{kind}/{name} binds {ref} to the operator SA")
viewer = find(docs, "ClusterRole", "image-scanner-containerimagescan-viewer-role")
vl = viewer["metadata"]["labels"]
check(all(vl.get(f"rbac.authorization.k8s.io/aggregate-to-{r}") == "true" for r in ("view", "edit", "admin")),
      "CIS viewer role aggregates to view, edit and admin")
check(rules(viewer) == {("stas.statnett.no", "containerimagescans", "get,list,watch", ""),
                        ("stas.statnett.no", "containerimagescans/status", "get", "")},
      "CIS viewer role is read-only")
editor = find(docs, "ClusterRole", "image-scanner-containerimagescan-editor-role")
check(not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in editor["metadata"].get("labels", {})),
      "CIS editor role is not aggregated")


def aggregated_to(role):
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    return {k[len(prefix):] for k, v in role["metadata"].get("labels", {}).items()
            if k.startswith(prefix) and v == "true"}


# Exceptions: namespace editors and admins manage their namespace's, viewers read them; the
# cluster-scoped ones reach no namespace role (only cluster-admin and explicit bindings).
ex_editor = find(docs, "ClusterRole", "image-scanner-vulnerabilityexception-editor-role")
check(aggregated_to(ex_editor) == {"edit", "admin"}
      and rules(ex_editor) == {("stas.statnett.no", "vulnerabilityexceptions",
                                "create,delete,deletecollection,get,list,patch,update,watch", ""),
                               ("stas.statnett.no", "vulnerabilityexceptions/status", "get", "")},
      "exception editor role: full access to VulnerabilityExceptions, aggregated to edit and admin only",
      sorted(aggregated_to(ex_editor)))
ex_viewer = find(docs, "ClusterRole", "image-scanner-vulnerabilityexception-viewer-role")
check(aggregated_to(ex_viewer) == {"view", "cluster-reader"}
      and rules(ex_viewer) == {("stas.statnett.no", "vulnerabilityexceptions", "get,list,watch", ""),
                               ("stas.statnett.no", "vulnerabilityexceptions/status", "get", "")},
      "exception viewer role: read-only, aggregated to view", sorted(aggregated_to(ex_viewer)))
for name in ("image-scanner-clustervulnerabilityexception-editor-role",
             "image-scanner-clustervulnerabilityexception-viewer-role"):
    role = find(docs, "ClusterRole", name)
    check(not aggregated_to(role) & {"view", "edit", "admin"}
          and all(r[1].startswith("clustervulnerabilityexceptions") for r in rules(role)),
          f"{name}: cluster-scoped exceptions only, in no namespace role", sorted(aggregated_to(role)))

pm = find(docs, "PodMonitor", "image-scanner-controller-manager-metrics-monitor")
tmpl_labels = dep["spec"]["template"]["metadata"]["labels"]
check(all(tmpl_labels.get(k) == v for k, v in pm["spec"]["selector"]["matchLabels"].items())
      and pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics",
      "PodMonitor selects the operator pod's metrics port")

# --- base (no prometheus-operator objects) and the e2e overlay -------------------------------------
base = load("base.yaml")
check({key(d) for d in base} == BASE_OBJECTS, "base: the default minus PodMonitor and PrometheusRule",
      sorted({key(d) for d in base} ^ BASE_OBJECTS))
e2e = load("e2e.yaml")
check({key(d) for d in e2e} == BASE_OBJECTS, "e2e overlay: no PodMonitor/PrometheusRule (the local plane lacks their CRDs)",
      sorted({key(d) for d in e2e} ^ BASE_OBJECTS))
ecm = find(e2e, "ConfigMap", prefix="image-scanner-config")
check(ecm["data"].get("SCAN_NAMESPACE_INCLUDE_REGEXP") == "^e2e-.*" and ecm["data"].get("SCAN_INTERVAL") == "2m",
      "e2e overlay: SCAN_NAMESPACE_INCLUDE_REGEXP=^e2e-.*, SCAN_INTERVAL=2m", ecm["data"])
check(operator_bindings(e2e) == (OPERATOR_BINDINGS, []),
      "e2e overlay: the operator SA has the default bindings (workload scan Jobs cluster-wide included)")
rn = load("real-node.yaml")
check({key(d) for d in rn} == BASE_OBJECTS and operator_bindings(rn) == (OPERATOR_BINDINGS, []),
      "real-node overlay: the base objects, the operator SA with the default bindings",
      sorted({key(d) for d in rn} ^ BASE_OBJECTS))
ests = find(e2e, "StatefulSet", "trivy")
vols = {v["name"]: v for v in ests["spec"]["template"]["spec"]["volumes"]}
check(not ests["spec"].get("volumeClaimTemplates") and "emptyDir" in vols.get("data", {}),
      "e2e overlay: trivy data volume is an emptyDir, no PVC")

# --- the upstream README's override examples --------------------------------------------------------
rd = load("readme.yaml")
rcms = [d for d in rd if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("image-scanner-config-")]
rdep = find(rd, "Deployment", "image-scanner-controller-manager")
check(len(rcms) == 1, "README example: still one image-scanner-config ConfigMap", [d["metadata"]["name"] for d in rcms])
if rcms:
    expect = dict(cm["data"], CIS_METRICS_LABELS="app.kubernetes.io/name", SCAN_INTERVAL="24h")
    check(rcms[0]["data"] == expect, "README example: SCAN_INTERVAL=24h merged, every other key kept",
          {k: (rcms[0]["data"].get(k), expect.get(k)) for k in set(expect) | set(rcms[0]["data"]) if rcms[0]["data"].get(k) != expect.get(k)})
    check(rcms[0]["metadata"]["name"] != cm["metadata"]["name"]
          and rdep["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"] == rcms[0]["metadata"]["name"],
          "README example: new content hash, and the Deployment follows it (rollout on change)")
rt = load("readme-trivy.yaml")
rtj = find(rt, "ConfigMap", "trivy-job-config")
check(rtj and rtj["data"] == dict(TRIVY_JOB_CONFIG, DB_REPOSITORY="registry.example.com/aquasecurity/trivy-db",
                                  JAVA_DB_REPOSITORY="registry.example.com/aquasecurity/trivy-java-db", OFFLINE_SCAN="true"),
      "README trivy-job-config example (namespace: image-scanner) merges", rtj and rtj["data"])
rtc = find(rt, "ConfigMap", prefix="image-scanner-config")
check(rtc and rtc["data"]["SCAN_INTERVAL"] == "6h", "image-scanner-config merge with namespace: image-scanner works too")
rts = find(rt, "StatefulSet", "trivy")
rimg = rts["spec"]["template"]["spec"]["containers"][0]["image"]
check(rimg.startswith("registry.example.com/aquasecurity/trivy:0.74.0@sha256:") and rtc["data"]["TRIVY_IMAGE"] == rimg,
      "images: override of ghcr.io/aquasecurity/trivy moves the server and TRIVY_IMAGE together", (rimg, rtc["data"]["TRIVY_IMAGE"]))

# --- scan Job placement variants (docs/install.md, "Scan Job placement") ---------------------------
WL_CRB = "ClusterRoleBinding/image-scanner-workload-scan-rolebinding"
pn = load("workload-scan-per-namespace.yaml")
per_ns = {("RoleBinding", n, "ClusterRole", "image-scanner-workload-scan-role") for n in ("team-a", "team-b")}
expect_bound = {b for b in OPERATOR_BINDINGS if b[3] != "image-scanner-workload-scan-role"} | per_ns
check(operator_bindings(pn) == (expect_bound, []),
      "least privilege: workload scan role bound per namespace (team-a, team-b), not cluster-wide",
      operator_bindings(pn))
pn_expect = (DEFAULT_OBJECTS - {WL_CRB}) | {"RoleBinding/image-scanner-workload-scan"}
pn_rules = rules(find(pn, "ClusterRole", "image-scanner-workload-scan-role") or {})
check({key(d) for d in pn} == pn_expect and pn_rules == WORKLOAD_SCAN_RULES,
      "least privilege: the default minus the cluster-wide binding, the ClusterRole kept for RoleBindings",
      f"objects not as expected {sorted({key(d) for d in pn} ^ pn_expect)}, role rules {sorted(pn_rules)}")
so = load("scan-namespace-only.yaml")
socm = find(so, "ConfigMap", prefix="image-scanner-config") or {"data": {}}
check({key(d) for d in so} == DEFAULT_OBJECTS - {WL_CRB}
      and operator_bindings(so)[0] == {b for b in OPERATOR_BINDINGS if b[3] != "image-scanner-workload-scan-role"}
      and socm["data"].get("SCAN_JOB_PLACEMENT") == "scan-namespace",
      "scan namespace only: SCAN_JOB_PLACEMENT=scan-namespace, no cluster-wide workload scan binding",
      (sorted({key(d) for d in so} ^ (DEFAULT_OBJECTS - {WL_CRB})), socm["data"].get("SCAN_JOB_PLACEMENT")))

# --- optional components ----------------------------------------------------------------------------
comp = load("components.yaml")
dash = find(comp, "ConfigMap", "image-scanner-dashboard")
with open(os.path.join(repo, "kustomize/components/dashboard/image-scanner.json")) as f:
    raw = json.load(f)
check(dash and dash["metadata"]["labels"].get("grafana_dashboard") == "1" and dash["metadata"]["namespace"] == NS
      and json.loads(dash["data"]["image-scanner.json"]) == raw,
      "dashboard component: ConfigMap image-scanner-dashboard (grafana_dashboard: \"1\") carries image-scanner.json")
orr = find(comp, "ClusterRole", "image-scanner-openreports-role")
check(orr and rules(orr) == {("openreports.io", "reports", "create,patch", ""),
                             ("stas.statnett.no", "containerimagescans/finalizers", "update", "")},
      "openreports component: write Reports owned by CIS, nothing else")
check({key(d) for d in comp} == DEFAULT_OBJECTS | {"ConfigMap/image-scanner-dashboard", "ClusterRole/image-scanner-openreports-role",
                                                  "ClusterRoleBinding/image-scanner-openreports-rolebinding"},
      "components: default + dashboard + openreports objects, nothing else")

print(f"check_render: {failures} failure(s)")
sys.exit(1 if failures else 0)
