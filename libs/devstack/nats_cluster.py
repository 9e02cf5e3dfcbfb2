"""A three-node NATS JetStream cluster on loopback, and a Stack whose services run on it at R3."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libs.devstack.nats_server import NatsServer
from libs.devstack.ports import free_port_block
from libs.devstack.postgres import create_database
from libs.devstack.processes import stop_all
from libs.devstack.stack import Stack

__all__ = ["ClusterStack", "NatsCluster"]


class NatsCluster:
    """`size` nats-servers routed to each other, each with its own store, name and monitoring port."""

    def __init__(self, root: Path, *, size: int = 3, name: str = "cpc") -> None:
        if size < 3:
            raise ValueError(f"a JetStream cluster needs at least 3 nodes for R3, got size={size}")
        self.root = root
        self.name = name
        # Ports below the ephemeral range, so a restarted node binds the same three again.
        self.ports = [free_port_block(3) for _ in range(size)]  # client, cluster route, monitoring
        routes = ", ".join(f"nats-route://127.0.0.1:{p + 1}" for p in self.ports)
        self.nodes = [
            NatsServer(
                root / f"n{i}",
                port=port,
                extra_conf=(
                    f"server_name: n{i}\n"
                    f"http: 127.0.0.1:{port + 2}\n"
                    f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{port + 1}\n  routes: [{routes}]\n}}\n"
                ),
            )
            for i, port in enumerate(self.ports)
        ]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what CPC_NATS_URL accepts)."""
        return ",".join(node.url for node in self.nodes)

    def url_from(self, first: int) -> str:
        """The server list starting at node `first % size`: clients given different starts spread out."""
        k = first % len(self.nodes)
        return ",".join(node.url for node in self.nodes[k:] + self.nodes[:k])

    def start(self, *, log_file: Path | None = None, timeout: float = 30.0) -> NatsCluster:
        """Start every node, then wait until the cluster has a JetStream meta leader."""
        for i, node in enumerate(self.nodes):
            node.start(log_file=self._log(i, log_file))
        self.wait_meta_leader(timeout)
        return self

    def _log(self, i: int, log_file: Path | None) -> Path:
        return (log_file or self.root / "nats-server.log").with_suffix(f".n{i}.log")

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def kill(self, i: int) -> None:
        """kill -9 node `i`, as a crash would."""
        self.nodes[i].kill()

    def restart(self, i: int) -> None:
        """Start node `i` again on its ports with the data it had."""
        self.nodes[i].start(log_file=self._log(i, None))

    def monitor(self, i: int, path: str) -> dict[str, Any]:
        """A monitoring endpoint of node `i` (`jsz?streams=true`, `varz`, ...) as JSON."""
        url = f"http://127.0.0.1:{self.ports[i] + 2}/{path}"
        with urllib.request.urlopen(url, timeout=2) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    def running(self) -> list[int]:
        """Indexes of the nodes that run."""
        return [i for i, node in enumerate(self.nodes) if node.process is not None]

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """The name of the JetStream meta leader, once the running nodes agree on one."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                leaders = {
                    self.monitor(i, "jsz").get("meta_cluster", {}).get("leader") for i in self.running()
                }
                if len(leaders) == 1 and (leader := leaders.pop()):
                    return str(leader)
                last = f"leaders seen: {leaders}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"no JetStream meta leader after {timeout:g} s: {last}")

    def _meta_leader(self, i: int) -> str | None:
        leader = self.monitor(i, "jsz").get("meta_cluster", {}).get("leader")
        return str(leader) if leader else None

    def stream_cluster(self, stream: str) -> dict[str, Any]:
        """The `cluster` part of a stream's info (leader and replicas), as its leader reports it: the
        other nodes' view of who is current can lag behind."""
        seen = None
        for i in self.running():
            for account in self.monitor(i, "jsz?streams=true").get("account_details", []):
                for detail in account.get("stream_detail", []):
                    if detail["name"] == stream and detail.get("cluster", {}).get("leader"):
                        seen = dict(detail["cluster"])
                        if seen["leader"] == f"n{i}":
                            return seen
        raise LookupError(f"stream {stream} has no leader among the running nodes (last view: {seen})")

    def stream_leader(self, stream: str) -> int:
        """Index of the node that leads `stream`."""
        return self.index_of(str(self.stream_cluster(stream)["leader"]))

    def current_replicas(self, stream: str) -> int:
        """How many copies of `stream` are current: the leader plus each replica that has caught up."""
        cluster = self.stream_cluster(stream)
        return 1 + sum(1 for r in cluster.get("replicas", []) if r.get("current") and not r.get("offline"))

    def clients(self, i: int) -> int:
        """How many client connections node `i` holds."""
        return int(self.monitor(i, "varz")["connections"])

    def index_of(self, server_name: str) -> int:
        """Index of the node called `server_name` (n0, n1, ...)."""
        if not server_name.startswith("n") or not server_name[1:].isdigit():
            raise ValueError(f'unknown node "{server_name}"')
        return int(server_name[1:])


class ClusterStack(Stack):
    """A Stack on a NatsCluster: streams at R3, each service given the node list from a different start."""

    def __init__(
        self, root: Path, *, services: list[str] | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(root, services=services, env={"CPC_JETSTREAM_REPLICAS": "3", **(env or {})})
        self.cluster = NatsCluster(root / "nats")

    @property
    def nats_url(self) -> str:
        """Every node's client URL, comma-separated."""
        return self.cluster.url

    def start_infra(self) -> Stack:
        """Start the cluster and PostgreSQL with a fresh database (idempotent)."""
        if self.database_url:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self.cluster.start(log_file=self.root / "nats-server.log")
        self.postgres.start()
        asyncio.run(create_database(self.postgres.url(), "cpclive_test", drop_first=True))
        self.database_url = self.postgres.url("cpclive_test")
        return self

    def env_for(self, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The Stack's environment, with the node list rotated by the service's place in the list."""
        env = super().env_for(name, extra)
        if "CPC_NATS_URL" not in self.extra_env and "CPC_NATS_URL" not in (extra or {}):
            place = self.services.index(name) if name in self.services else len(self.services)
            env["CPC_NATS_URL"] = self.cluster.url_from(place)
        return env

    def stop(self) -> None:
        """Stop every process, then the cluster and PostgreSQL."""
        stop_all(self.procs.values())
        self.cluster.stop()
        self.postgres.stop()
