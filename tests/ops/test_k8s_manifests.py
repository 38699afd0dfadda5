"""Kubernetes manifests: every object valid (core schemas offline + our CRD schemas), overlays render,
and the production rules hold (replicas, zones, PDBs, probes, limits, HPA, KEDA, hooks, CNPG, RabbitMQ)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kv

from alexandrite.mes.worker import DRAIN_SECONDS
from tests.ops.crd_schemas import CRD_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32"
APIS = {"shop": 8001, "crm": 8002, "mes": 8003}
OVERLAYS = ("dev", "prod")

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for kustomize) is not installed")


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def base_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load(K8S / "base" / name)]


_rendered: dict[str, list[dict[str, Any]]] = {}


def render(overlay: str) -> list[dict[str, Any]]:
    if overlay not in _rendered:
        result = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        _rendered[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _rendered[overlay]


def validate(doc: dict[str, Any]) -> None:
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        jsonschema.validate(doc, crd)
    else:
        kv.validate(doc, KUBERNETES_VERSION, strict=True)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_base_manifest_is_valid() -> None:
    docs = base_objects()
    assert len(docs) > 20
    for doc in docs:
        validate(doc)


def test_a_typo_is_caught() -> None:
    deployment = by_kind(base_objects(), "Deployment")["shop"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kv.ValidationError):
        validate(broken)
    cluster = by_kind(base_objects(), "Cluster")["shop-db"]
    broken = {**cluster, "spec": {**cluster["spec"], "instance": 3}}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_overlay_files_are_well_formed() -> None:
    """Checked without kubectl too: resources exist, patch targets exist in base, namespaces differ."""
    base_kinds = {d["kind"] for d in base_objects()}
    namespaces = set()
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
        assert kustomization["resources"] == ["../../base"]
        assert (K8S / "overlays" / overlay / "../../base/kustomization.yaml").exists()
        namespaces.add(kustomization["namespace"])
        assert [i["name"] for i in kustomization["images"]] == ["alexandrite"]
        for patch in kustomization.get("patches", []):
            assert patch["target"]["kind"] in base_kinds, patch["target"]
            for operation in yaml.safe_load(patch["patch"]):
                assert operation["op"] in ("replace", "add", "remove") and operation["path"].startswith("/spec/")
    assert len(namespaces) == len(OVERLAYS)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_to_valid_objects(overlay: str) -> None:
    docs = render(overlay)
    for doc in docs:
        validate(doc)
    expected_namespace = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())["namespace"]
    assert {d["metadata"].get("namespace") for d in docs} == {expected_namespace}
    images = {c["image"] for d in by_kind(docs, "Deployment").values()
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1 and images.pop().startswith("registry.example.com/alexandrite/alexandrite:")


def rules_hold(docs: list[dict[str, Any]], *, cnpg_instances: int) -> None:
    deployments, pdbs, hpas = by_kind(docs, "Deployment"), by_kind(docs, "PodDisruptionBudget"), by_kind(
        docs, "HorizontalPodAutoscaler")
    for service, port in APIS.items():
        spec = deployments[service]["spec"]
        pod = spec["template"]["spec"]
        assert spec["replicas"] >= 2 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert pod["securityContext"]["runAsNonRoot"] is True
        zones = [c for c in pod["topologySpreadConstraints"] if c["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zones and zones[0]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
        (container,) = pod["containers"]
        assert container["args"][:2] == ["serve", service]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["ports"][0]["containerPort"] == port
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"])
        assert pdbs[service]["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
        assert pdbs[service]["spec"]["minAvailable"] < spec["replicas"]
        assert hpas[service]["spec"]["scaleTargetRef"]["name"] == service and hpas[service]["spec"]["minReplicas"] >= 2

    worker = deployments["pricing-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > DRAIN_SECONDS + 10
    for container in worker["containers"]:
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    (scaled,) = by_kind(docs, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "pricing-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq" and trigger["metadata"]["queueName"] == "mes.pricing.jobs"
    assert trigger["metadata"]["mode"] == "QueueLength"
    scale_down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]

    (job,) = by_kind(docs, "Job").values()
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync" and "pre-upgrade" in annotations["helm.sh/hook"]
    assert sorted(c["args"][-1] for c in job["spec"]["template"]["spec"]["containers"]) == sorted(APIS)

    clusters = by_kind(docs, "Cluster")
    assert set(clusters) == {f"{s}-db" for s in APIS}
    for name, cluster in clusters.items():
        assert cluster["spec"]["instances"] == cnpg_instances
        assert cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"].endswith(name)
        assert cluster["spec"]["affinity"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert {b["spec"]["cluster"]["name"] for b in by_kind(docs, "ScheduledBackup").values()} == set(clusters)
    (rabbit,) = by_kind(docs, "RabbitmqCluster").values()
    assert rabbit["spec"]["replicas"] == 3
    assert "pause_minority" in rabbit["spec"]["rabbitmq"]["additionalConfig"]


def test_base_follows_the_production_rules() -> None:
    rules_hold(base_objects(), cnpg_instances=3)


@needs_kubectl
def test_overlays_follow_the_production_rules() -> None:
    rules_hold(render("prod"), cnpg_instances=3)
    rules_hold(render("dev"), cnpg_instances=2)
    prod = by_kind(render("prod"), "Deployment")
    assert all(prod[s]["spec"]["replicas"] == 3 for s in APIS)
    assert by_kind(render("prod"), "HorizontalPodAutoscaler")["shop"]["spec"]["maxReplicas"] == 20


def test_redis_runs_with_sentinel_as_the_drill_proved() -> None:
    """One master + one replica, three sentinels (quorum 2) and the services told where the sentinels are."""
    docs = base_objects()
    sets = by_kind(docs, "StatefulSet")
    assert sets["redis"]["spec"]["replicas"] == 2 and sets["redis-sentinel"]["spec"]["replicas"] == 3
    scripts = by_kind(docs, "ConfigMap")["redis-scripts"]["data"]
    assert "sentinel monitor alexandrite redis-0.redis 6379 2" in scripts["sentinel.conf"]
    config = by_kind(docs, "ConfigMap")["alexandrite-config"]["data"]
    assert config["ALEX_REDIS_SENTINEL_MASTER"] == "alexandrite"
    assert config["ALEX_REDIS_SENTINELS"].split(",") == [
        f"redis-sentinel-{i}.redis-sentinel:26379" for i in range(3)]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert pdbs["redis-sentinel"]["spec"]["minAvailable"] == 2 and pdbs["redis"]["spec"]["minAvailable"] == 1
    for cluster in by_kind(docs, "Cluster").values():  # CloudNativePG: one synchronous replica, as Patroni's
        assert cluster["spec"]["minSyncReplicas"] == cluster["spec"]["maxSyncReplicas"] == 1
