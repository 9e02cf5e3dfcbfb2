"""Kubernetes objects for one catalog entry: Deployment, Service, PodDisruptionBudget, HPA."""

from __future__ import annotations

from typing import Any

from deploy.catalog import Entry

__all__ = ["HTTP_PORT", "manifests"]

HTTP_PORT = 8080
PART_OF = "cpc-live"
Obj = dict[str, Any]


def _labels(entry: Entry) -> Obj:
    return {"app.kubernetes.io/name": entry.name, "app.kubernetes.io/part-of": PART_OF}


def _meta(entry: Entry, **extra: Any) -> Obj:
    return {
        "name": entry.name,
        "labels": {**_labels(entry), "app.kubernetes.io/component": entry.kind},
        **extra,
    }


def _env(entry: Entry, required: list[str]) -> list[Obj]:
    env: list[Obj] = [
        {
            "name": "CPC_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "cpc-postgres-app", "key": "uri"}},
        },
        {"name": "CPC_METRICS_PORT", "value": str(entry.metrics_port)},
    ]
    for var, ref in sorted(entry.secret_env.items()):
        secret, key = ref.split("/")
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    if entry.kind == "gateway":
        env += [
            {"name": "CPC_HTTP_HOST", "value": "0.0.0.0"},
            {"name": "CPC_HTTP_PORT", "value": str(HTTP_PORT)},
            {"name": "CPC_REQUIRED_SERVICES", "value": ",".join(required)},
        ]
    if entry.udp_ports is not None:
        # WebRTC candidates carry the node's address: the pod shares the node's network (docs/operations.md).
        env += [
            {"name": entry.public_ip_env, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": entry.port_min_env, "value": str(entry.udp_ports[0])},
            {"name": entry.port_max_env, "value": str(entry.udp_ports[1])},
        ]
    env += [{"name": k, "value": v} for k, v in sorted(entry.env.items())]
    return env


def _probes(entry: Entry) -> Obj:
    port = "http" if entry.kind == "gateway" else "metrics"
    return {
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": port},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        },
    }


def _container(entry: Entry, required: list[str]) -> Obj:
    ports: list[Obj] = [{"name": "metrics", "containerPort": entry.metrics_port, "protocol": "TCP"}]
    if entry.kind == "gateway":
        ports.insert(0, {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"})
    cpu_limit = f"{int(entry.cpu.removesuffix('m')) * 4}m" if entry.cpu.endswith("m") else entry.cpu
    return {
        "name": entry.name,
        "image": "cpc-live",
        "imagePullPolicy": "Always",
        "args": [entry.module],
        "envFrom": [{"configMapRef": {"name": "cpc-config"}}],
        "env": _env(entry, required),
        "ports": ports,
        **_probes(entry),
        "resources": {
            "requests": {"cpu": entry.cpu, "memory": entry.memory},
            "limits": {"cpu": cpu_limit, "memory": entry.memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _pod_spec(entry: Entry, required: list[str]) -> Obj:
    spec: Obj = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": _labels(entry)},
            }
        ],
        "containers": [_container(entry, required)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if entry.kind == "media":
        # One pod per node: the UDP range is the node's own.
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
        spec["topologySpreadConstraints"][0]["whenUnsatisfiable"] = "DoNotSchedule"
        spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": _labels(entry)},
                    }
                ]
            }
        }
    return spec


def _deployment(entry: Entry, required: list[str]) -> Obj:
    meta = _meta(entry)
    if entry.kind == "media":
        meta["annotations"] = {
            "checkov.io/skip1": "CKV_K8S_19=WebRTC media needs the node's address and UDP range (hostNetwork)"
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": entry.min_replicas,
            "revisionHistoryLimit": 5,
            # Zero-downtime rollouts: a new pod must be ready before an old one stops.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": _labels(entry)},
            "template": {"metadata": {"labels": meta["labels"]}, "spec": _pod_spec(entry, required)},
        },
    }


def _service(entry: Entry) -> Obj:
    ports: list[Obj] = [{"name": "metrics", "port": entry.metrics_port, "targetPort": "metrics"}]
    if entry.kind == "gateway":
        ports.insert(0, {"name": "http", "port": 80, "targetPort": "http"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(entry),
        "spec": {"type": "ClusterIP", "selector": _labels(entry), "ports": ports},
    }


def _pdb(entry: Entry) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(entry),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(entry)}},
    }


def _hpa(entry: Entry) -> Obj:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(entry),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": entry.name},
            "minReplicas": entry.min_replicas,
            "maxReplicas": entry.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def manifests(entry: Entry, required: list[str]) -> list[Obj]:
    """The objects of one entry; `required` are the services the gateway's /readyz waits for."""
    return [_deployment(entry, required), _service(entry), _pdb(entry), _hpa(entry)]
