"""Renders deploy/kubernetes's overlays with `kubectl kustomize` and checks what an operator relies on.

Every document validates against the Kubernetes schemas (kubernetes-validate, strict); each
of the five services is a one-replica StatefulSet with a volume for its database mounted where
NEST_DATABASE points, native gRPC probes on the port its Service names grpc, Prometheus scrape
annotations on the admin port, requests and memory limits, and a PodDisruptionBudget; the
backup CronJob reaches every admin port; production holds no shared secret.

    python check_manifests.py REPOSITORY [--kubernetes-version 1.30.0]
"""
import argparse
import subprocess
import sys

import kubernetes_validate
import yaml

SERVICES = {  # name: (executable, wire port)
    "catalog": ("catalog-service", 7101),
    "entitlement": ("entitlement-service", 7102),
    "marketplace-order": ("marketplace-order-service", 7103),
    "settlement": ("settlement-service", 7104),
    "events": ("events-service", 7105),
}


def render(repository, overlay):
    path = f"{repository}/deploy/kubernetes/overlays/{overlay}"
    text = subprocess.run(["kubectl", "kustomize", path], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def check(overlay, documents, version):
    problems = []

    def expect(condition, message):
        if not condition:
            problems.append(f"{overlay}: {message}")

    for document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{overlay}: {document['kind']}/{document['metadata']['name']}: {error.message}")
    by_kind = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document

    for name, (executable, port) in SERVICES.items():
        service = by_kind.get("Service", {}).get(name)
        statefulset = by_kind.get("StatefulSet", {}).get(name)
        expect(service is not None, f"no Service {name}")
        expect(statefulset is not None, f"no StatefulSet {name}")
        expect(name in by_kind.get("PodDisruptionBudget", {}), f"no PodDisruptionBudget {name}")
        if not service or not statefulset:
            continue
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        expect(ports == {"nest": port, "grpc": port + 100, "admin": port + 200}, f"Service {name} ports {ports}")
        spec = statefulset["spec"]
        expect(spec["replicas"] == 1, f"{name}: {spec['replicas']} replicas; one SQLite writer means one")
        claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
        expect(claims == ["data"], f"{name}: volume claims {claims}")
        pod = spec["template"]
        (container,) = pod["spec"]["containers"]
        expect(container["command"] == [executable], f"{name}: runs {container['command']}")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        database = env.get("NEST_DATABASE") or ""
        expect(
            "data" in mounts and database.startswith(mounts["data"] + "/"),
            f"{name}: database {database} not on its volume ({mounts.get('data')})",
        )
        for probe in ("readinessProbe", "livenessProbe"):
            grpc = container.get(probe, {}).get("grpc", {})
            expect(grpc.get("port") == port + 100, f"{name}: {probe} is not a gRPC probe on {port + 100}: {container.get(probe)}")
        annotations = pod["metadata"].get("annotations", {})
        expect(
            annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == str(port + 200),
            f"{name}: scrape annotations {annotations}",
        )
        resources = container.get("resources", {})
        expect(
            "cpu" in resources.get("requests", {}) and "memory" in resources.get("requests", {})
            and "memory" in resources.get("limits", {}),
            f"{name}: resources {resources}",
        )
        if overlay == "production":
            expect("NEST_AUTH_SECRET_FILE" not in env, f"{name}: holds the shared secret in production")
            expect(env.get("NEST_AUTH_JWKS_FILE", "").startswith(mounts.get("jwks", "?")), f"{name}: JWKS not mounted")
            expect(env.get("NEST_SERVICE_KEY_ID") == f"service:{name}:1", f"{name}: key id {env.get('NEST_SERVICE_KEY_ID')}")

    cronjob = by_kind.get("CronJob", {}).get("nest-backup")
    expect(cronjob is not None, "no CronJob nest-backup")
    if cronjob:
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        command = " ".join(container.get("command", []) + container.get("args", []))
        expect("nestctl backup" in command, f"the backup job runs {command}")
        for name, (_, port) in SERVICES.items():
            expect(f"{name}:{port + 200}" in command, f"the backup job does not reach {name}'s admin port")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository")
    parser.add_argument("--kubernetes-version", default="1.30.0")
    arguments = parser.parse_args()
    problems = []
    for overlay in ("local", "production"):
        documents = render(arguments.repository, overlay)
        kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in documents)
        print(f"{overlay}: {len(documents)} documents: {', '.join(kinds)}")
        problems += check(overlay, documents, arguments.kubernetes_version)
    for problem in problems:
        print(problem)
    print("manifests ok" if not problems else f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
