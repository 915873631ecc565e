"""The Kubernetes manifests (deploy/kubernetes/): each resource valid against the Kubernetes schemas, checked
offline with the schemas `kubernetes-validate` ships; and what the README promises of them: probes on /healthz
and /readyz, the worker's on its heartbeat by a command the CLI has, requests and limits, non-root read-only
containers, every setting one the service knows."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.cli import main
from service.settings import Settings, get_settings

FOLDER = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
KUSTOMIZATIONS = ("kustomization.yaml", "migrate/kustomization.yaml")
NOT_SETTINGS = {"PYTHONDONTWRITEBYTECODE"}  # the interpreter's: no .pyc written on a read-only filesystem


def _manifests() -> list[Path]:
    return sorted(path for path in FOLDER.rglob("*.yaml") if path.name != "kustomization.yaml")


def _resources() -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(path.relative_to(FOLDER)), resource)
        for path in _manifests()
        for resource in yaml.safe_load_all(path.read_text())
    ]


RESOURCES = _resources()


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [resource for _, resource in RESOURCES if resource["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    [resource] = [r for r in _of_kind(kind) if r["metadata"]["name"] == name]
    return resource


def _pod_specs() -> list[dict[str, Any]]:
    return [r["spec"]["template"]["spec"] for r in _of_kind("Deployment") + _of_kind("Job")]


@pytest.mark.parametrize(
    "resource", [r for _, r in RESOURCES], ids=[f"{file}:{r['kind']}/{r['metadata']['name']}" for file, r in RESOURCES]
)
def test_each_resource_is_valid_against_the_kubernetes_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def test_two_kustomizations_deploy_every_manifest_but_the_example_secret_the_migration_apart() -> None:
    """The migration is applied (and waited for) before the rest: a kustomization of its own, setting the same
    image."""
    service, migration = (yaml.safe_load((FOLDER / path).read_text()) for path in KUSTOMIZATIONS)
    deployed = {*service["resources"], *(f"migrate/{resource}" for resource in migration["resources"])}

    assert deployed == {str(path.relative_to(FOLDER)) for path in _manifests()} - {"secret.example.yaml"}
    assert migration["resources"] == ["job.yaml"]
    images = {container["image"].partition(":")[0] for pod in _pod_specs() for container in pod["containers"]}
    for kustomization in (service, migration):
        assert images == {image["name"] for image in kustomization["images"]}, "one image, which each sets"
    assert [
        container["args"]
        for container in _named("Job", "timex-licensing-migrate")["spec"]["template"]["spec"]["containers"]
    ] == [["migrate"]]


def test_every_container_runs_unprivileged_on_a_read_only_filesystem_within_its_resources() -> None:
    for pod in _pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert (
                set(container["resources"]["requests"])
                == set(container["resources"]["limits"])
                == {
                    "cpu",
                    "memory",
                }
            )


def test_the_service_is_probed_on_healthz_and_readyz_and_scaled_on_cpu_within_a_disruption_budget() -> None:
    serve = _named("Deployment", "timex-licensing")
    [container] = serve["spec"]["template"]["spec"]["containers"]
    labels = serve["spec"]["template"]["metadata"]["labels"]

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert _named("Service", "timex-licensing")["spec"]["selector"] == labels
    assert _named("PodDisruptionBudget", "timex-licensing")["spec"]["selector"]["matchLabels"] == labels
    autoscaler = _named("HorizontalPodAutoscaler", "timex-licensing")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == "timex-licensing"
    assert [metric["resource"]["name"] for metric in autoscaler["metrics"]] == ["cpu"]
    assert autoscaler["minReplicas"] >= 2


def test_every_variable_given_is_a_setting_and_the_secrets_come_from_the_secret() -> None:
    config = _named("ConfigMap", "timex-licensing")["data"]
    secret = _named("Secret", "timex-licensing")["stringData"]
    settings = {name.upper() for name in Settings.model_fields}

    assert set(config) | set(secret) <= settings | NOT_SETTINGS
    assert {"JWT_SECRET", "KEY_HASH_SECRET", "CERTIFICATE_KEY_SECRET", "DATABASE_URL"} <= set(secret)
    assert not set(config) & set(secret)
    assert config["DATABASE_TRANSACTION_POOLER"] == "true" and "DATABASE_DIRECT_URL" in secret
    for pod in _pod_specs():
        for container in pod["containers"]:
            assert container["envFrom"] == [
                {"configMapRef": {"name": "timex-licensing"}},
                {"secretRef": {"name": "timex-licensing"}},
            ]


@pytest.fixture
def heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The settings' heartbeat file, in the test's folder, for the CLI run here."""
    path = tmp_path / "heartbeat"
    monkeypatch.setenv("WEBHOOK_WORKER_HEARTBEAT_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_the_worker_is_probed_by_a_cli_command_on_a_heartbeat_it_can_write(heartbeat: Path) -> None:
    """Its startup and liveness probes run `timex-licensing worker-alive` (the image's entry point, on its PATH), which
    fails until the worker's loop has completed a pass and passes after; the heartbeat file the ConfigMap (or the
    default) names is on a volume, the root filesystem being read-only."""
    [container] = _named("Deployment", "timex-licensing-worker")["spec"]["template"]["spec"]["containers"]
    config = _named("ConfigMap", "timex-licensing")["data"]
    written = Path(
        config.get("WEBHOOK_WORKER_HEARTBEAT_FILE", Settings.model_fields["webhook_worker_heartbeat_file"].default)
    )

    assert any(written.is_relative_to(mount["mountPath"]) for mount in container["volumeMounts"])
    for probe in ("startupProbe", "livenessProbe"):
        program, *args = container[probe]["exec"]["command"]
        assert (program, args[0]) == ("timex-licensing", "worker-alive")
        heartbeat.unlink(missing_ok=True)
        assert main(args) == 1, probe
        heartbeat.touch()
        assert main(args) == 0, probe
