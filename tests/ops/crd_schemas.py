"""Minimal JSON schemas for the operator resources (CloudNativePG, KEDA, RabbitMQ cluster operator).

kubernetes-validate ships only the core Kubernetes schemas; these cover the fields the
manifests rely on, closed where a typo would silently be ignored by the operator.
"""

from __future__ import annotations

from typing import Any

SECRET_KEY_REF = {"type": "object", "required": ["name", "key"],
                  "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                  "additionalProperties": False}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"],
                         "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}}},
            "spec": spec,
        },
    }


CNPG_CLUSTER = _resource("postgresql.cnpg.io/v1", "Cluster", {
    "type": "object",
    "required": ["instances", "storage", "backup"],
    "additionalProperties": False,
    "properties": {
        "instances": {"type": "integer", "minimum": 1},
        "imageName": {"type": "string"},
        "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
        "minSyncReplicas": {"type": "integer", "minimum": 0},
        "maxSyncReplicas": {"type": "integer", "minimum": 0},
        "postgresql": {"type": "object", "properties": {"parameters": {
            "type": "object", "additionalProperties": {"type": "string"}}}},
        "bootstrap": {"type": "object", "properties": {"initdb": {
            "type": "object", "required": ["database", "owner"],
            "properties": {"database": {"type": "string"}, "owner": {"type": "string"}}}}},
        "storage": {"type": "object", "required": ["size"], "properties": {"size": {"type": "string"}}},
        "walStorage": {"type": "object", "required": ["size"], "properties": {"size": {"type": "string"}}},
        "resources": {"type": "object"},
        "affinity": {"type": "object", "additionalProperties": False, "properties": {
            "enablePodAntiAffinity": {"type": "boolean"}, "topologyKey": {"type": "string"},
            "podAntiAffinityType": {"enum": ["preferred", "required"]}}},
        "monitoring": {"type": "object", "properties": {"enablePodMonitor": {"type": "boolean"}}},
        "backup": {"type": "object", "required": ["barmanObjectStore"], "properties": {
            "retentionPolicy": {"type": "string", "pattern": "^[1-9][0-9]*[dwm]$"},
            "barmanObjectStore": {"type": "object", "required": ["destinationPath", "s3Credentials"],
                                  "properties": {
                                      "destinationPath": {"type": "string", "pattern": "^s3://"},
                                      "s3Credentials": {"type": "object", "required": [
                                          "accessKeyId", "secretAccessKey"], "properties": {
                                          "accessKeyId": SECRET_KEY_REF, "secretAccessKey": SECRET_KEY_REF}},
                                      "wal": {"type": "object"}, "data": {"type": "object"}}}}},
    },
})

CNPG_SCHEDULED_BACKUP = _resource("postgresql.cnpg.io/v1", "ScheduledBackup", {
    "type": "object", "required": ["schedule", "cluster"], "additionalProperties": False,
    "properties": {
        "schedule": {"type": "string", "pattern": r"^(\S+\s+){5}\S+$"},  # six fields, seconds first
        "backupOwnerReference": {"enum": ["none", "self", "cluster"]},
        "cluster": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    },
})

KEDA_SCALED_OBJECT = _resource("keda.sh/v1alpha1", "ScaledObject", {
    "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
    "properties": {
        "scaleTargetRef": {"type": "object", "required": ["name"]},
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "pollingInterval": {"type": "integer"},
        "cooldownPeriod": {"type": "integer"},
        "advanced": {"type": "object", "properties": {"horizontalPodAutoscalerConfig": {
            "type": "object", "properties": {"behavior": {"type": "object"}}}}},
        "triggers": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "metadata"],
            "properties": {"type": {"type": "string"}, "metadata": {
                "type": "object", "additionalProperties": {"type": "string"}},
                "authenticationRef": {"type": "object", "required": ["name"]}}}},
    },
})

KEDA_TRIGGER_AUTH = _resource("keda.sh/v1alpha1", "TriggerAuthentication", {
    "type": "object", "required": ["secretTargetRef"],
    "properties": {"secretTargetRef": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["parameter", "name", "key"], "additionalProperties": False,
        "properties": {"parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}}}}},
})

RABBITMQ_CLUSTER = _resource("rabbitmq.com/v1beta1", "RabbitmqCluster", {
    "type": "object", "required": ["replicas"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 1},
        "image": {"type": "string"},
        "resources": {"type": "object"},
        "persistence": {"type": "object", "properties": {"storage": {"type": "string"}}},
        "rabbitmq": {"type": "object", "additionalProperties": False, "properties": {
            "additionalPlugins": {"type": "array", "items": {"type": "string"}},
            "additionalConfig": {"type": "string"}, "advancedConfig": {"type": "string"}}},
        "override": {"type": "object"},
    },
})

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): CNPG_SCHEDULED_BACKUP,
    ("keda.sh/v1alpha1", "ScaledObject"): KEDA_SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): KEDA_TRIGGER_AUTH,
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): RABBITMQ_CLUSTER,
}
