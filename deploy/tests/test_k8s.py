"""deploy/k8s/: every overlay renders with `kubectl kustomize`, every object it renders is valid for
the pinned Kubernetes version, and the rendered objects keep the deployment's policies (probes,
resources, drain, disruption budgets, autoscaling, migrations as Jobs, Secrets only referenced,
network policies that follow who calls whom in the code, locked-down containers).

kubectl is required, not optional: without it these fail and say how to get it
(deploy/k8s/ensure_kubectl.sh, which `make test` and CI run first).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.redis_acl import ACCESS, acl_rules, redis_username
from shared.services import GATEWAY, SERVICES, App

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
# The Kubernetes version the manifests are written for and validated against.
KUBERNETES_VERSION = "1.32.0"
AUTOSCALED = {"gateway", "order-service", "stock-service"}
ENTRYPOINT = REPO_ROOT / "deploy" / "entrypoint.sh"
# Time after uvicorn's graceful shutdown for the lifespan to close (after-commit work, pools).
LIFESPAN_CLOSE_SECONDS = 5
# Variables that carry a password or key (inside a URL or alone): only ever from a Secret.
SECRET_VARIABLE = re.compile(r"(DATABASE_URL|REDIS_URL|KEY|PASSWORD|USERNAME)$")

Object = dict[str, Any]


def k8s_name(app: App) -> str:
    return "gateway" if app is GATEWAY else f"{app.name}-service"


APPS = (GATEWAY, *SERVICES)
BY_K8S_NAME = {k8s_name(app): app for app in APPS}


def callers_in_code() -> dict[str, set[str]]:
    """Who calls whom over HTTP, from the code: an app calls a service when its settings carry
    that service's base URL (`<name>_service_url`)."""
    callers: dict[str, set[str]] = {k8s_name(app): set() for app in SERVICES}
    for app in APPS:
        settings_class = importlib.import_module(f"{app.package}.settings").Settings
        for field in settings_class.model_fields:
            if field.endswith("_service_url"):
                callee = next(s for s in SERVICES if s.name == field.removesuffix("_service_url"))
                callers[k8s_name(callee)].add(k8s_name(app))
    return callers


@cache
def render(overlay: str) -> tuple[Object, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing, so the Kubernetes manifests cannot be checked: run "
                    "deploy/k8s/ensure_kubectl.sh (installs Debian's kubernetes-client as root)",
                    pytrace=False)
    result = subprocess.run([kubectl, "kustomize", str(K8S_DIR / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(objects: tuple[Object, ...], kind: str) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_templates(objects: tuple[Object, ...]) -> dict[str, Object]:
    """Every pod spec the overlay would run, by `Kind/name`."""
    return {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
            for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")}


def app_deployments(objects: tuple[Object, ...]) -> dict[str, Object]:
    deployments = of_kind(objects, "Deployment")
    return {name: deployments[name] for name in BY_K8S_NAME if name in deployments}


def env_of(container: Object) -> dict[str, Object]:
    return {e["name"]: e for e in container.get("env", [])}


def uvicorn_graceful_seconds() -> int:
    found = re.search(r"--timeout-graceful-shutdown (\d+)", ENTRYPOINT.read_text())
    assert found, "deploy/entrypoint.sh no longer bounds uvicorn's graceful shutdown"
    return int(found.group(1))


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[Object, ...]:
    return render(request.param)


def test_every_rendered_object_is_valid_for_the_pinned_kubernetes(
        objects: tuple[Object, ...]) -> None:
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert errors == []


def test_the_validation_refuses_a_misspelt_field() -> None:
    budget = next(iter(of_kind(render("production"), "PodDisruptionBudget").values()))
    broken = {**budget, "spec": {**budget["spec"], "maxUnavailabel": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_app_has_a_service_a_deployment_and_a_disruption_budget(
        objects: tuple[Object, ...]) -> None:
    deployments = app_deployments(objects)
    assert set(deployments) == set(BY_K8S_NAME)
    services = of_kind(objects, "Service")
    budgets = of_kind(objects, "PodDisruptionBudget")
    for name, app in BY_K8S_NAME.items():
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["ports"][0]["port"] == app.port
        assert services[name]["spec"]["selector"].items() <= pod_labels.items()
        budget = budgets[name]["spec"]
        assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
        # A budget that allows no eviction at all would block every node drain.
        assert budget.get("maxUnavailable", 0) >= 1 or "minAvailable" in budget


def test_the_sale_path_autoscales(objects: tuple[Object, ...]) -> None:
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    assert set(autoscalers) == AUTOSCALED
    deployments = app_deployments(objects)
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        # A replica count in the Deployment would fight the autoscaler at every apply.
        assert "replicas" not in deployments[name]["spec"]


def test_every_app_container_has_probes_and_resources(objects: tuple[Object, ...]) -> None:
    for name, deployment in app_deployments(objects).items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        port = BY_K8S_NAME[name].port
        assert container["args"] == [BY_K8S_NAME[name].package, str(port)]
        metrics_port = 9000 if name == "gateway" else port  # its own listener, not public
        internal = BY_K8S_NAME[name].internal_port  # the other services' calls
        assert container["ports"] == [{"name": "http", "containerPort": port}] + (
            [{"name": "metrics", "containerPort": metrics_port}] if name == "gateway" else []) + (
            [{"name": "internal", "containerPort": internal}] if internal else [])
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true",
                               "prometheus.io/port": str(metrics_port),
                               "prometheus.io/path": "/metrics"}, name
        if name == "gateway":
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["GATEWAY_METRICS_PORT"] == str(metrics_port)
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        # Readiness asks the dependencies (database, Redis), liveness only the process: a
        # datastore outage takes a pod out of the endpoints without restarting it.
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for pod_name, pod in pod_templates((deployment,)).items():
            for c in pod.get("initContainers", []) + pod["containers"]:
                resources = c["resources"]
                assert {"cpu", "memory"} <= resources["requests"].keys(), (pod_name, c["name"])
                assert "memory" in resources["limits"], (pod_name, c["name"])


def test_a_stopping_pod_drains_before_it_is_killed(objects: tuple[Object, ...]) -> None:
    graceful = uvicorn_graceful_seconds()
    for name, deployment in app_deployments(objects).items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep", name
        drain = int(command[1])
        # Long enough for the endpoints' removal to reach every node, then uvicorn finishes what
        # is in flight, then the lifespan closes: all before the kill.
        assert drain >= 5, name
        assert pod["terminationGracePeriodSeconds"] >= drain + graceful + LIFESPAN_CLOSE_SECONDS, name


def test_every_pod_runs_locked_down(objects: tuple[Object, ...]) -> None:
    for name, pod in pod_templates(objects).items():
        assert pod["automountServiceAccountToken"] is False, name
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        for c in pod.get("initContainers", []) + pod["containers"]:
            security = c["securityContext"]
            where = (name, c["name"])
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser", 0)) != 0, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where


def test_secrets_are_referenced_never_written(objects: tuple[Object, ...]) -> None:
    assert of_kind(objects, "Secret") == {}
    for config in of_kind(objects, "ConfigMap").values():
        assert not [k for k in config["data"] if SECRET_VARIABLE.search(k)], config["data"]
    referenced = False
    for name, pod in pod_templates(objects).items():
        for c in pod.get("initContainers", []) + pod["containers"]:
            for variable, entry in env_of(c).items():
                if SECRET_VARIABLE.search(variable):
                    assert "value" not in entry, (name, variable)
                    assert "secretKeyRef" in entry["valueFrom"], (name, variable)
                    referenced = True
    assert referenced


def test_each_database_service_is_migrated_by_its_own_job(objects: tuple[Object, ...]) -> None:
    jobs = of_kind(objects, "Job")
    deployments = app_deployments(objects)
    for app in SERVICES:
        name = k8s_name(app)
        [migrate] = jobs[f"{name}-migrate"]["spec"]["template"]["spec"]["containers"]
        assert migrate["command"] == ["python", "-m", "deploy.migrate", app.package]
        assert f"{app.env_prefix}_DATABASE_URL" in env_of(migrate)
        pod = deployments[name]["spec"]["template"]["spec"]
        # The app neither migrates at start (replicas would only queue on the lock) nor starts
        # before the Job has brought its schema to head.
        assert env_of(pod["containers"][0])["MIGRATE_ON_START"]["value"] == "0"
        [wait] = pod["initContainers"]
        assert wait["command"] == ["python", "-m", "deploy.migrate", "--wait", app.package]
    assert len(jobs) == len(SERVICES)


def ingress_sources(policy: Object) -> list[set[str] | None]:
    """Per ingress rule, the app names it admits (None: from anywhere)."""
    sources: list[set[str] | None] = []
    for rule in policy["spec"].get("ingress", []):
        if "from" not in rule:
            sources.append(None)
            continue
        names: set[str] = set()
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: {peer}"
            selector = peer["podSelector"]
            if "matchLabels" in selector and "app.kubernetes.io/name" in selector["matchLabels"]:
                names.add(selector["matchLabels"]["app.kubernetes.io/name"])
            else:
                names.add(repr(selector))
        sources.append(names)
    return sources


def selects(policy: Object, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert "matchExpressions" not in selector
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def test_only_the_gateway_takes_outside_traffic_and_each_service_only_its_callers(
        objects: tuple[Object, ...]) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    expected = callers_in_code()
    assert expected["stock-service"] == {"gateway", "order-service", "product-service"}
    deployments = app_deployments(objects)
    for name in BY_K8S_NAME:
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        admitted: set[str] = set()
        from_anywhere = False
        for policy in policies.values():
            if policy["metadata"]["name"] == "default-deny-ingress" or not selects(policy, labels):
                continue
            assert "Ingress" in policy["spec"]["policyTypes"]
            for sources in ingress_sources(policy):
                if sources is None:
                    from_anywhere = True
                else:
                    admitted |= sources
        assert from_anywhere == (name == "gateway"), name
        if name != "gateway":
            assert admitted == expected[name], name


def test_a_policy_names_callers_by_the_labels_their_pods_carry(
        objects: tuple[Object, ...]) -> None:
    pod_labels = [d["spec"]["template"]["metadata"]["labels"]
                  for d in app_deployments(objects).values()]
    for policy in of_kind(objects, "NetworkPolicy").values():
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                match = peer["podSelector"].get("matchLabels")
                if match:
                    assert any(match.items() <= labels.items() for labels in pod_labels), match


def test_the_dev_overlay_runs_its_datastores_and_production_does_not() -> None:
    in_dev = set(pod_templates(render("dev")))
    in_production = set(pod_templates(render("production")))
    assert {"StatefulSet/mysql", "Deployment/redis", "Deployment/mailpit"} <= in_dev
    assert in_dev - in_production == {"StatefulSet/mysql", "Deployment/redis",
                                      "Deployment/mailpit"}
    config = {o["metadata"]["name"].rsplit("-", 1)[0]: o["data"]
              for o in render("production") if o["kind"] == "ConfigMap"}
    assert config["preorder-config"]["APP_ENV"] == "production"


def test_every_variable_a_deployment_sets_is_read_by_its_app(objects: tuple[Object, ...]) -> None:
    unprefixed = {"IDENTITY_PUBLIC_KEYS", "MIGRATE_ON_START", "SMTP_USERNAME", "SMTP_PASSWORD"}
    for name, deployment in app_deployments(objects).items():
        app = BY_K8S_NAME[name]
        settings_class = importlib.import_module(f"{app.package}.settings").Settings
        known = {f"{app.env_prefix}_{field}".upper() for field in settings_class.model_fields}
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            unknown = set(env_of(container)) - known - unprefixed
            assert unknown == set(), name


def test_the_dev_redis_has_each_apps_own_user_as_shared_redis_acl_says() -> None:
    """One Redis user per app, limited as shared/redis_acl.py says (the dev overlay's Redis);
    production's Redis is provisioned with the same users out of band."""
    (container,) = pod_templates(render("dev"))["Deployment/redis"]["containers"]
    script = " ".join(container["command"][2].replace("\\\n", " ").split())
    for app in ACCESS:
        rules = " ".join(f"'{rule}'" for rule in acl_rules(app, "preorder:"))
        assert (f'--user {redis_username(app)} on ">${app.upper()}_REDIS_PASSWORD" {rules}'
                in script), app
    passwords = {e["name"] for e in container["env"]}
    assert {f"{app.upper()}_REDIS_PASSWORD" for app in ACCESS} <= passwords
