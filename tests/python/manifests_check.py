"""Checks the deployment manifests in deploy/ without a cluster (run by tests/kserve/manifests.rs).

- every document in deploy/kubernetes/ validates with kubernetes-validate, strict (an unknown
  field is an error), against the newest Kubernetes version it knows;
- the KServe documents in deploy/kserve/ validate, strict, against KServe's API schemas in
  deploy/kserve/crds/ (their Kubernetes core types resolved against the same Kubernetes schema);
- the documents agree with each other: selectors match the pods, the autoscaler targets the
  Deployment, the ServiceMonitor finds the Service's port, the probes and security context are
  the ones docs/deployment.md describes, the InferenceServices name the runtime and its format;
- both validators reject a broken copy, so a check that passes is a check that can fail.

Usage: python manifests_check.py REPO_ROOT. Prints one line per check and `all checks passed`.
"""

import copy
import json
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = Path(sys.argv[1])
K8S_VERSION = kv_utils.latest_version()
DEFS_URI = "https://kubernetes.io/api/_definitions.json"
FAILED = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILED.append(what)


def load_all(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_errors(doc):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return None
    except Exception as err:  # noqa: BLE001 - the message is the report
        return str(err).splitlines()[0]


# --- deploy/kubernetes: kubernetes-validate, strict -------------------------------------------

kube = {}
for path in sorted((ROOT / "deploy/kubernetes").glob("*.yaml")):
    for doc in load_all(path):
        err = k8s_errors(doc)
        check(err is None, f"{path.relative_to(ROOT)}: {doc['kind']}/{doc['metadata']['name']} "
                           f"valid for Kubernetes {K8S_VERSION} (strict){'' if err is None else ': ' + err}")
        kube[doc["kind"]] = doc
for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]:
    check(kind in kube, f"deploy/kubernetes has a {kind}")

broken = copy.deepcopy(kube["Deployment"])
broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
check(k8s_errors(broken) is not None, "kubernetes-validate rejects a misspelt container field")

# --- cross-checks of deploy/kubernetes and deploy/prometheus ----------------------------------

deploy = kube["Deployment"]
pod = deploy["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
container = pod["spec"]["containers"][0]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


check(selects(deploy["spec"]["selector"]["matchLabels"], pod_labels),
      "the Deployment's selector matches its pods")
check(selects(kube["Service"]["spec"]["selector"], pod_labels),
      "the Service's selector matches the pods")
check(selects(kube["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], pod_labels),
      "the PodDisruptionBudget's selector matches the pods")
target = kube["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
check((target["kind"], target["name"]) == ("Deployment", deploy["metadata"]["name"]),
      "the HorizontalPodAutoscaler targets the Deployment")
check(any(m["type"] == "Resource" and m["resource"]["name"] == "cpu"
          for m in kube["HorizontalPodAutoscaler"]["spec"]["metrics"]),
      "the HorizontalPodAutoscaler scales on CPU")
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
check(all(p["targetPort"] in ports for p in kube["Service"]["spec"]["ports"]),
      "the Service's target ports are named container ports")
annotations = pod["metadata"].get("annotations", {})
check(annotations.get("prometheus.io/scrape") == "true"
      and annotations.get("prometheus.io/path") == "/metrics"
      and int(annotations.get("prometheus.io/port", 0)) in ports.values(),
      "the pods carry scrape annotations for /metrics on the container's port")
probes = {name: (container[name]["httpGet"]["path"], container[name]["httpGet"]["port"])
          for name in ["startupProbe", "livenessProbe", "readinessProbe"]}
check(probes == {"startupProbe": ("/healthz", "http"), "livenessProbe": ("/healthz", "http"),
                 "readinessProbe": ("/readyz", "http")},
      f"probes: startup and liveness on /healthz, readiness on /readyz ({probes})")
grace = deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
args = container["args"]
flag = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a}
check(grace > float(flag["--shutdown-grace"]) + float(flag["--drain-timeout"]),
      "terminationGracePeriodSeconds exceeds --shutdown-grace + --drain-timeout")
check(int(flag["--port"]) == ports["http"], "--port is the declared container port")


def hardened(ctx, what):
    check(ctx.get("runAsNonRoot") is True and isinstance(ctx.get("runAsUser"), int)
          and ctx["runAsUser"] != 0, f"{what}: runs as a numeric non-root user")
    check(ctx.get("readOnlyRootFilesystem") is True, f"{what}: read-only root filesystem")
    check(ctx.get("allowPrivilegeEscalation") is False, f"{what}: no privilege escalation")
    check(ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{what}: drops all capabilities")


hardened(container["securityContext"], "Deployment container")

for monitor in load_all(ROOT / "deploy/prometheus/servicemonitor.yaml"):
    check(monitor["kind"] == "ServiceMonitor"
          and selects(monitor["spec"]["selector"]["matchLabels"], kube["Service"]["metadata"]["labels"]),
          "the ServiceMonitor selects the Service by its labels")
    service_ports = {p["name"] for p in kube["Service"]["spec"]["ports"]}
    check(all(e["port"] in service_ports and e["path"] == "/metrics" for e in monitor["spec"]["endpoints"]),
          "the ServiceMonitor scrapes /metrics on a named Service port")

# --- deploy/kserve: KServe's schemas ---------------------------------------------------------

defs_path = Path(kv_utils.__file__).parent / f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict/_definitions.json"
if not defs_path.exists():
    defs_path = next((Path(kv_utils.__file__).parent / "kubernetes-json-schema").glob(
        f"v{K8S_VERSION}*-local-strict/_definitions.json"))
definitions = json.loads(defs_path.read_text())


def absolute_refs(node):
    """A copy of part of the Kubernetes definitions whose local `#/$defs/...` references point
    into the definitions document wherever the copy ends up."""
    if isinstance(node, list):
        return [absolute_refs(n) for n in node]
    if not isinstance(node, dict):
        return node
    return {k: (DEFS_URI + v if k == "$ref" and v.startswith("#/") else absolute_refs(v))
            for k, v in node.items()}


def resolve(node, pod_fields=None):
    """KServe's schema with Kubernetes' core types: x-kubernetes-type becomes a $ref into the
    Kubernetes definitions; x-inline copies the properties of an inlined Go struct."""
    if isinstance(node, list):
        return [resolve(n, pod_fields) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: resolve(v, pod_fields) for k, v in node.items()}
    name = node.pop("x-kubernetes-type", None)
    if name is not None:
        node["$ref"] = f"{DEFS_URI}#/$defs/{name}"
    inline = node.pop("x-inline", None)
    if inline is not None:
        if inline == "ServingRuntimePodSpec":
            inlined = pod_fields
        else:
            inlined = absolute_refs(definitions["$defs"][inline]["properties"])
        props = dict(inlined)
        props.update(node.get("properties", {}))
        node["properties"] = props
    return node


registry = referencing.Registry().with_resource(
    DEFS_URI, referencing.Resource.from_contents(definitions))


def kserve_validator(schema_file):
    raw = yaml.safe_load((ROOT / "deploy/kserve/crds" / schema_file).read_text())
    spec = raw["properties"]["spec"]["properties"]
    pod_fields = {k: v for k, v in spec.items()
                  if k in ["containers", "volumes", "nodeSelector", "affinity", "tolerations",
                           "labels", "annotations", "imagePullSecrets", "hostIPC"]}
    pod_fields = resolve(pod_fields)
    schema = resolve(raw, pod_fields)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kserve_errors(validator, doc):
    try:
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    except Exception as err:  # noqa: BLE001 - an unresolvable schema is a failure too
        return f"schema error: {str(err)[:300]}"
    return "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:3])


runtime_validator = kserve_validator("servingruntime.schema.yaml")
isvc_validator = kserve_validator("inferenceservice.schema.yaml")
runtimes = load_all(ROOT / "deploy/kserve/servingruntime.yaml")
check(len(runtimes) == 1 and runtimes[0]["kind"] == "ServingRuntime",
      "deploy/kserve/servingruntime.yaml holds one ServingRuntime")
runtime = runtimes[0]
err = kserve_errors(runtime_validator, runtime)
check(not err, f"servingruntime.yaml valid against KServe's ServingRuntime schema {err}")
broken = copy.deepcopy(runtime)
broken["spec"]["supportedModelFormat"] = broken["spec"].pop("supportedModelFormats")
check(bool(kserve_errors(runtime_validator, broken)), "KServe's schema rejects a misspelt field")
broken = copy.deepcopy(runtime)
broken["spec"]["containers"][0]["readinessprobe"] = {}
check(bool(kserve_errors(runtime_validator, broken)), "KServe's schema rejects a misspelt container field")

spec = runtime["spec"]
formats = {f["name"]: f for f in spec["supportedModelFormats"]}
check(formats.get("onnx", {}).get("autoSelect") is True, "the runtime auto-selects the onnx format")
check(spec.get("protocolVersions") == ["v2"], "the runtime speaks protocol v2")
kc = spec["containers"][0]
check(kc["name"] == "kserve-container", "the runtime's container is kserve-container")
check("--models=/mnt/models" in kc["args"] and "--port=8080" in kc["args"]
      and "--model-name={{.Name}}" in kc["args"],
      "the runtime's arguments name /mnt/models, port 8080 and {{.Name}} literally")
check([p["containerPort"] for p in kc["ports"]] == [8080], "the runtime declares port 8080")
check(kc["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
      and kc["livenessProbe"]["httpGet"]["path"] == "/v2/health/live",
      "the runtime's probes are the v2 health routes")
check("PORT" not in {e["name"] for e in kc.get("env", [])},
      "the runtime leaves PORT to Knative (it refuses a container that sets it)")
check("requests" in kc["resources"] and "limits" in kc["resources"], "the runtime sets resources")
hardened(kc["securityContext"], "ServingRuntime container")
check(kc["command"] == container["command"], "the runtime and the Deployment run the same command")

for path in sorted((ROOT / "deploy/kserve").glob("inferenceservice*.yaml")):
    for doc in load_all(path):
        err = kserve_errors(isvc_validator, doc)
        check(not err, f"{path.relative_to(ROOT)}: valid against KServe's InferenceService schema {err}")
        model = doc["spec"]["predictor"]["model"]
        check(model["runtime"] == runtime["metadata"]["name"] and model["modelFormat"]["name"] in formats
              and model.get("protocolVersion") in spec["protocolVersions"],
              f"{path.relative_to(ROOT)}: names the tinyserve runtime, its format and protocol")
        names = {e["name"] for e in kc.get("env", [])}
        check(all(e["name"] in names for e in model.get("env", [])),
              f"{path.relative_to(ROOT)}: overrides only variables the runtime's arguments read")
broken = copy.deepcopy(doc)
broken["spec"]["predictor"]["model"]["storageURI"] = "s3://x"
check(bool(kserve_errors(isvc_validator, broken)), "KServe's schema rejects a misspelt InferenceService field")

if FAILED:
    print(f"{len(FAILED)} check(s) failed")
    sys.exit(1)
print("all checks passed")
