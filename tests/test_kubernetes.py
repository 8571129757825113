"""deploy/kubernetes checked where no cluster runs: every object against Kubernetes' own
OpenAPI schemas (kubernetes-validate, strict: unknown fields refused), the KEDA objects
against KEDA's published CRDs (tests/schemas/keda, see its README), and the wiring between
the manifests and the code: settings, probes, queues, image targets, secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from api.routes.health import router as health_router
from cli.app import app as cli_app
from cli.stack import GPU_RE
from shared.settings import Settings
from shared.tasks import QUEUES, ROUTES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
KEDA = ROOT / "tests" / "schemas" / "keda"
KUBERNETES_VERSION = "1.33.0"  # the oldest release the docs ask for; its schemas ship pinned
EXAMPLE_SECRET = "secret.example.yaml"  # applied by hand, not by the kustomization


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


KUSTOMIZATION = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
OBJECTS = [doc for name in KUSTOMIZATION["resources"] for doc in documents(DEPLOY / name)]
[SECRET] = documents(DEPLOY / EXAMPLE_SECRET)


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")
SCALED = of_kind("ScaledObject")
[CONFIG] = of_kind("ConfigMap").values()
WORKERS = {name: d for name, d in DEPLOYMENTS.items() if name.startswith("worker-")}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [main] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(main)


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_the_kustomization_lists_every_manifest() -> None:
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml", EXAMPLE_SECRET}
    assert set(KUSTOMIZATION["resources"]) == on_disk
    assert KUSTOMIZATION["namespace"] == SECRET["metadata"]["namespace"] == "assetrag"


@pytest.mark.parametrize(
    "obj",
    [o for o in [*OBJECTS, SECRET] if not o["apiVersion"].startswith("keda.sh/")],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_kubernetes_objects_match_the_openapi_schemas(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def crd_schema(kind: str, api_version: str) -> dict[str, Any]:
    """The openAPIV3Schema of the CRD version an object names (one file per CRD)."""
    for path in KEDA.glob("*.yaml"):
        [crd] = documents(path)
        if crd["spec"]["names"]["kind"] != kind:
            continue
        group, version = api_version.split("/")
        assert crd["spec"]["group"] == group
        [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
        return dict(served["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD for {kind} in {KEDA}")


def unknown_fields(value: Any, schema: dict[str, Any], at: str = "") -> list[str]:
    """Fields the schema does not name, as the API server's strict field validation finds
    them (a structural schema prunes what it does not declare, so plain JSON Schema passes
    them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, list) and "items" in schema:
        return [f for i, v in enumerate(value) for f in unknown_fields(v, schema["items"], at)]
    if not isinstance(value, dict):
        return []
    named = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    found = []
    for key, item in value.items():
        if not at and key == "metadata":
            continue  # ObjectMeta, which the server checks itself (the CRD names no field)
        if key in named:
            found += unknown_fields(item, named[key], f"{at}.{key}")
        elif isinstance(extra, dict):
            found += unknown_fields(item, extra, f"{at}.{key}")
        else:
            found.append(f"{at}.{key}")
    return found


@pytest.mark.parametrize(
    "obj",
    [o for o in OBJECTS if o["apiVersion"].startswith("keda.sh/")],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_keda_objects_match_kedas_crds(obj: dict[str, Any]) -> None:
    schema = crd_schema(obj["kind"], obj["apiVersion"])
    jsonschema.Draft7Validator(schema).validate(obj)
    assert unknown_fields(obj, schema) == []


def test_the_crd_check_finds_what_it_should() -> None:
    schema = crd_schema("ScaledObject", "keda.sh/v1alpha1")
    bad = {**SCALED["worker-embed"], "spec": {**SCALED["worker-embed"]["spec"], "minReplica": 0}}
    assert unknown_fields(bad, schema) == [".spec.minReplica"]
    numeric = SCALED["worker-embed"]["spec"]["triggers"][0] | {"metadata": {"listLength": 10}}
    with pytest.raises(jsonschema.ValidationError):  # scaler metadata are strings
        jsonschema.Draft7Validator(schema["properties"]["spec"]["properties"]["triggers"]).validate(
            [numeric]
        )


def settings_names() -> set[str]:
    """Every environment variable Settings reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names |= {str(c) for c in choices} if choices else {f"ASSETRAG_{name.upper()}"}
    return names


def pod_env(deployment: dict[str, Any]) -> dict[str, str]:
    """What the worker or API container's environment holds: the ConfigMap, the Secret (the
    example's values) and its own entries."""
    main = container(deployment)
    refs = {next(iter(ref)) for ref in main["envFrom"]}
    assert refs == {"configMapRef", "secretRef"}, deployment["metadata"]["name"]
    own = {e["name"]: e["value"] for e in main.get("env", [])}
    return {**CONFIG["data"], **SECRET["stringData"], **own}


def test_every_variable_is_one_the_code_reads_and_the_addresses_are_set() -> None:
    known = settings_names()
    kubernetes_only = {"REDIS_ADDRESS", "REDIS_PASSWORD"}  # KEDA's, through the Secret
    for deployment in DEPLOYMENTS.values():
        env = pod_env(deployment)
        assert set(env) - kubernetes_only <= known, set(env) - known
        settings = Settings(_env_file=None, **_fields(env))  # type: ignore[call-arg]
        # the defaults that only suit one machine are overridden
        assert settings.redis_url.startswith("redis://") and "127.0.0.1" not in settings.redis_url
        assert settings.resolved_milvus_uri.startswith("http://")
        assert settings.resolved_blob_uri.startswith("s3://")
    required = [n for n, f in Settings.model_fields.items() if f.is_required()]
    assert required == []  # so nothing unset can stop a pod at start-up


def _fields(env: dict[str, str]) -> dict[str, str]:
    """Environment entries as Settings' keyword arguments (by field name, or by alias)."""
    by_alias = {}
    for name, field in Settings.model_fields.items():
        for choice in getattr(field.validation_alias, "choices", None) or []:
            by_alias[str(choice)] = name
    out = {}
    for key, value in env.items():
        if key in by_alias:
            out[by_alias[key]] = value
        elif key.startswith("ASSETRAG_"):
            out[key[len("ASSETRAG_") :].lower()] = value
    return out


def cli_commands() -> set[str]:
    group = typer.main.get_command(cli_app)
    return set(group.commands)  # type: ignore[attr-defined]


def test_probes_hit_real_routes_ports_and_commands() -> None:
    api = container(DEPLOYMENTS["api"])
    routes = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    [port] = api["ports"]
    assert option(api["command"], "--port") == str(port["containerPort"])
    assert option(api["command"], "--host") == "0.0.0.0"
    commands = cli_commands()
    for name, deployment in WORKERS.items():
        main = container(deployment)
        assert main["command"][:2] == ["assetrag", "worker"], name
        assert main["startupProbe"]["exec"]["command"][1] in commands, name
        live = main["livenessProbe"]["httpGet"]
        [metrics] = [p for p in main["ports"] if p["name"] == live["port"]]
        assert metrics["containerPort"] == int(CONFIG["data"]["ASSETRAG_METRICS_PORT"]), name
        assert CONFIG["data"]["ASSETRAG_METRICS_HOST"] == "0.0.0.0"
        for init in deployment["spec"]["template"]["spec"].get("initContainers", []):
            assert init["command"][0] == "assetrag" and init["command"][1] in commands, name


def consumed(deployment: dict[str, Any]) -> list[str]:
    queues = option(container(deployment)["command"], "--queues")
    assert queues is not None
    return queues.split(",")


def test_scaled_queues_are_the_ones_the_workers_consume() -> None:
    assert sorted(q for d in WORKERS.values() for q in consumed(d)) == sorted(QUEUES)
    assert set(ROUTES.values()) <= set(QUEUES)
    assert set(SCALED) == set(WORKERS)  # every worker kind scales, the API does not
    for name, scaled in SCALED.items():
        target = DEPLOYMENTS[scaled["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], name  # KEDA owns the count
        lists = [
            t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"
        ]
        assert lists == consumed(target), name
    # Kinds that may scale to zero are left out of readiness, the others are needed.
    ready = CONFIG["data"]["ASSETRAG_READY_QUEUES"].split(",")
    to_zero = {
        q
        for s in SCALED.values()
        if s["spec"]["minReplicaCount"] == 0
        for q in consumed(DEPLOYMENTS[s["spec"]["scaleTargetRef"]["name"]])
    }
    assert to_zero == {"embed"}
    assert sorted(ready) == sorted(set(QUEUES) - to_zero)


def test_keda_reaches_the_redis_the_workers_use() -> None:
    [auth] = of_kind("TriggerAuthentication").values()
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert {r["name"] for r in refs.values()} == {SECRET["metadata"]["name"]}
    secret = SECRET["stringData"]
    url = urlsplit(secret["ASSETRAG_REDIS_URL"])
    assert secret[refs["address"]["key"]] == f"{url.hostname}:{url.port}"
    assert secret[refs["password"]["key"]] == url.password
    for name, scaled in SCALED.items():
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "redis":
                assert trigger["metadata"]["databaseIndex"] == url.path.strip("/"), name
                assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"], name


def dockerfile_targets() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE))


def test_images_are_dockerfile_targets() -> None:
    targets = dockerfile_targets()
    renamed = {i["name"] for i in KUSTOMIZATION["images"]}
    for name, deployment in DEPLOYMENTS.items():
        spec = deployment["spec"]["template"]["spec"]
        for box in [*spec.get("initContainers", []), *spec["containers"]]:
            image = box["image"]
            assert image in renamed, (name, image)
            assert image.removeprefix("assetrag-") in targets, (name, image)
    assert container(DEPLOYMENTS["api"])["image"] == "assetrag-api"  # no torch in the API


def test_one_gpu_per_embed_pod_on_gpu_nodes() -> None:
    spec = WORKERS["worker-embed"]["spec"]["template"]["spec"]
    main = container(WORKERS["worker-embed"])
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert GPU_RE.fullmatch(option(main["command"], "--gpu") or "")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["nodeSelector"]
    for name, deployment in DEPLOYMENTS.items():
        if name != "worker-embed":
            limits = container(deployment)["resources"].get("limits", {})
            assert "nvidia.com/gpu" not in limits, name
    # the model pods read the weights from the one cache volume the init container fills
    for name in ("worker-embed", "worker-query"):
        spec = WORKERS[name]["spec"]["template"]["spec"]
        [init] = spec["initContainers"]
        mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        assert mounts == {"clip-cache": "/root/.cache/clip"}, name
        assert {"name": "clip-cache", "mountPath": "/root/.cache/clip"} in container(WORKERS[name])[
            "volumeMounts"
        ]


def test_drain_outlasts_a_batch_and_every_kind_has_a_disruption_budget() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    grace = {
        n: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for n, d in DEPLOYMENTS.items()
    }
    assert grace["worker-embed"] > defaults.batch_retry_s + defaults.url_timeout_s
    assert grace["worker-generate"] > defaults.gemini_retry_budget_s
    assert grace["api"] > defaults.max_wait_s
    budgets = of_kind("PodDisruptionBudget")
    assert set(budgets) == set(DEPLOYMENTS)
    for name, budget in budgets.items():
        labels = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    [service] = of_kind("Service").values()
    api_labels = DEPLOYMENTS["api"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= api_labels.items()
    assert DEPLOYMENTS["api"]["spec"]["replicas"] == 2
