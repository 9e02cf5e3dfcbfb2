"""JSON Schemas for the custom resources our manifests use (CloudNativePG Cluster and ScheduledBackup,
Prometheus Operator ServiceMonitor and PrometheusRule). kubernetes-validate ships only the built-in
Kubernetes types, and the operators' CRDs are in no package this project can install, so these schemas
spell out, with upstream's field names and types, exactly the fields we use; `additionalProperties: false`
makes a misspelt or misplaced field fail the test."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _obj(props: Schema, required: tuple[str, ...] = ()) -> Schema:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_LABELS = {"type": "object", "additionalProperties": _STR}
_META = _obj({"name": _STR, "namespace": _STR, "labels": _LABELS, "annotations": _LABELS}, ("name",))
_SECRET_KEY = _obj({"name": _STR, "key": _STR}, ("name", "key"))
_RESOURCES = _obj({"requests": _LABELS, "limits": _LABELS})
_SELECTOR = _obj(
    {
        "matchLabels": _LABELS,
        "matchExpressions": {
            "type": "array",
            "items": _obj(
                {"key": _STR, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]}, "values": {}},
                ("key", "operator"),
            ),
        },
    }
)


def _resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return _obj(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _META, "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


_CLUSTER_SPEC = _obj(
    {
        "instances": {"type": "integer", "minimum": 1},
        "minSyncReplicas": {"type": "integer", "minimum": 0},
        "maxSyncReplicas": {"type": "integer", "minimum": 0},
        "enablePDB": _BOOL,
        "postgresql": _obj({"parameters": _LABELS}),
        "imageName": _STR,
        "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
        "inheritedMetadata": _obj({"labels": _LABELS, "annotations": _LABELS}),
        "bootstrap": _obj({"initdb": _obj({"database": _STR, "owner": _STR})}),
        "storage": _obj({"size": _STR, "storageClass": _STR}, ("size",)),
        "resources": _RESOURCES,
        "monitoring": _obj({"enablePodMonitor": _BOOL}),
        "backup": _obj(
            {
                "retentionPolicy": {"type": "string", "pattern": "^[1-9][0-9]*[dwm]$"},
                "barmanObjectStore": _obj(
                    {
                        "destinationPath": _STR,
                        "s3Credentials": _obj({"accessKeyId": _SECRET_KEY, "secretAccessKey": _SECRET_KEY}),
                        "wal": _obj({"compression": {"enum": ["gzip", "bzip2", "snappy"]}}),
                    },
                    ("destinationPath",),
                ),
            }
        ),
    },
    ("instances", "storage"),
)
_SCHEDULED_BACKUP_SPEC = _obj(
    {
        # CloudNativePG schedules have six fields: seconds first.
        "schedule": {"type": "string", "pattern": r"^(\S+\s+){5}\S+$"},
        "backupOwnerReference": {"enum": ["none", "self", "cluster"]},
        "cluster": _obj({"name": _STR}, ("name",)),
    },
    ("schedule", "cluster"),
)
_RELABEL = _obj(
    {
        "sourceLabels": {"type": "array", "items": _STR},
        "targetLabel": _STR,
        "replacement": _STR,
        "regex": _STR,
        "action": _STR,
    }
)
_SERVICE_MONITOR_SPEC = _obj(
    {
        "selector": _SELECTOR,
        "endpoints": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                {
                    "port": _STR,
                    "path": _STR,
                    "interval": _STR,
                    "relabelings": {"type": "array", "items": _RELABEL},
                },
                ("port",),
            ),
        },
    },
    ("selector", "endpoints"),
)
_RULE = _obj(
    {
        "alert": _STR,
        "record": _STR,
        "expr": {"type": "string", "minLength": 1},
        "for": _STR,
        "labels": _LABELS,
        "annotations": _LABELS,
    },
    ("expr",),
)
_PROMETHEUS_RULE_SPEC = _obj(
    {"groups": {"type": "array", "items": _obj({"name": _STR, "rules": {"type": "array", "items": _RULE}})}},
    ("groups",),
)

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("postgresql.cnpg.io/v1", "Cluster"): _resource("postgresql.cnpg.io/v1", "Cluster", _CLUSTER_SPEC),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): _resource(
        "postgresql.cnpg.io/v1", "ScheduledBackup", _SCHEDULED_BACKUP_SPEC
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        "monitoring.coreos.com/v1", "ServiceMonitor", _SERVICE_MONITOR_SPEC
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _resource(
        "monitoring.coreos.com/v1", "PrometheusRule", _PROMETHEUS_RULE_SPEC
    ),
}
