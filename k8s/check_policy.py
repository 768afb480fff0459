"""The deployment policy, checked on rendered manifests (k8s/test.sh renders both overlays and passes them here).

Every container: liveness and readiness probes — gRPC on its gRPC port, or (a gRPC port under mutual TLS, which
kubelet's gRPC probes cannot pass) HTTP GET /livez and /readyz on its metrics port —, CPU and memory requests and
limits, and the
restricted securityContext (non-root, read-only root filesystem, no privilege escalation, all capabilities
dropped, RuntimeDefault seccomp on the pod). Every Deployment: a PodDisruptionBudget and an autoscaling/v2
HorizontalPodAutoscaler on a per-pod metric, a grace period longer than the drain, topology spread. Networking: a
default-deny policy, and only the gateway reachable from outside the namespace (other pods admit the gateway,
plus Prometheus on the metrics port only). Every image pinned by a version tag (never `latest` or untagged).

Usage: python check_policy.py RENDERED.yaml...   (exit 1 with one line per violation)
"""

import re
import sys

import yaml

PUBLIC = "gateway"


def fail(errors, where, msg):
    errors.append(f"{where}: {msg}")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def check(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    errors = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = by_kind.get("Deployment", [])
    if not deployments:
        fail(errors, path, "no Deployments rendered")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    policies = by_kind.get("NetworkPolicy", [])

    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):
        fail(errors, path, "no default-deny NetworkPolicy (empty podSelector, Ingress+Egress, no rules)")

    for dep in deployments:
        name = dep["metadata"]["name"]
        where = f"{path}: Deployment/{name}"
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        spec = pod["spec"]
        psc = spec.get("securityContext", {})
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(errors, where, "pod seccompProfile is not RuntimeDefault")
        if not psc.get("runAsNonRoot"):
            fail(errors, where, "pod runAsNonRoot is not true")
        if not spec.get("topologySpreadConstraints"):
            fail(errors, where, "no topologySpreadConstraints")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for c in spec.get("initContainers", []) + spec["containers"]:
            cw = f"{where} container {c['name']}"
            image = c.get("image", "")
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            if not re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9.]+)?", tag):
                fail(errors, cw, f"image {image!r} is not pinned to a version tag")
            grpc = next((p["containerPort"] for p in c.get("ports", []) if p.get("name") == "grpc"), None)
            for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
                p = c.get(probe)
                if p and "httpGet" in p:
                    # The metrics port's HTTP probes (a gRPC port under mutual TLS).
                    if p["httpGet"].get("port") != "metrics" or p["httpGet"].get("path") != path:
                        fail(errors, cw, f"HTTP {probe} must GET {path} on the metrics port")
                elif not p or "grpc" not in p:
                    fail(errors, cw, f"no gRPC or HTTP {probe}")
                elif p["grpc"]["port"] != grpc:
                    fail(errors, cw, f"{probe} port {p['grpc']['port']} is not the gRPC port {grpc}")
            if "grpc" in c.get("livenessProbe", {}) and c["livenessProbe"]["grpc"].get("service") != "liveness":
                fail(errors, cw, "livenessProbe must ask the 'liveness' health service (readiness follows warm-up)")
            if c.get("readinessProbe", {}).get("grpc", {}).get("service", "") != "":
                fail(errors, cw, "readinessProbe must ask the overall health (service '')")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        fail(errors, cw, f"no {r} {kind}")
            sc = c.get("securityContext", {})
            if not sc.get("runAsNonRoot") and not psc.get("runAsNonRoot"):
                fail(errors, cw, "may run as root")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(errors, cw, "root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(errors, cw, "allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(errors, cw, "capabilities are not all dropped")
            pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            if grace <= 30 + pause:
                fail(errors, cw, f"terminationGracePeriodSeconds {grace} is not longer than the 30 s drain + {pause} s")

        if not any(selects(p["spec"]["selector"], labels) for p in pdbs):
            fail(errors, where, "no PodDisruptionBudget selects its pods")
        hpa = [h for h in hpas if h["spec"]["scaleTargetRef"]["name"] == name
               and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"]
        if len(hpa) != 1 or hpa[0]["apiVersion"] != "autoscaling/v2":
            fail(errors, where, "needs exactly one autoscaling/v2 HorizontalPodAutoscaler")
        elif not any(m["type"] == "Pods" for m in hpa[0]["spec"].get("metrics", [])):
            fail(errors, where, "its HPA does not scale on a per-pod metric")

        # Who may reach it: the policies that select its pods, and their ingress peers.
        mine = [p for p in policies if "Ingress" in p["spec"].get("policyTypes", [])
                and selects(p["spec"]["podSelector"], labels) and p["spec"].get("podSelector")]
        if not mine:
            fail(errors, where, "no NetworkPolicy of its own")
        for p in mine:
            for rule in p["spec"].get("ingress", []):
                peers = rule.get("from")
                ports = {q.get("port") for q in rule.get("ports", [])}
                if peers is None:
                    if name != PUBLIC:
                        fail(errors, where, f"{p['metadata']['name']} admits traffic from anywhere")
                    continue
                for peer in peers:
                    if "ipBlock" in peer:
                        if name != PUBLIC:
                            fail(errors, where, f"{p['metadata']['name']} admits an ipBlock")
                    elif "namespaceSelector" in peer:
                        # Only Prometheus scraping, only on the metrics port.
                        if ports != {"metrics"}:
                            fail(errors, where, f"{p['metadata']['name']} admits another namespace beyond metrics")
                    elif name != PUBLIC and peer.get("podSelector", {}).get("matchLabels") != {
                            "app.kubernetes.io/name": PUBLIC}:
                        fail(errors, where, f"{p['metadata']['name']} admits pods other than the gateway")
    for s in by_kind.get("Service", []):
        if s["spec"].get("type", "ClusterIP") not in ("ClusterIP",) and s["metadata"]["name"] != PUBLIC:
            fail(errors, f"{path}: Service/{s['metadata']['name']}", "exposed outside the cluster")
    return errors


def main():
    errors = [e for p in sys.argv[1:] for e in check(p)]
    for e in errors:
        print(e)
    if errors:
        sys.exit(1)
    print(f"policy ok: {', '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
