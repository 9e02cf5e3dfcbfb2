"""The one list of the platform's processes (deploy/services.toml), read into typed entries."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["ROOT", "Entry", "load_catalog", "services_in_code"]

ROOT = Path(__file__).resolve().parents[1]
Kind = Literal["service", "gateway", "media"]


class Entry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One process: how it is deployed (see the comments at the top of deploy/services.toml)."""

    name: str = ""
    kind: Kind
    cpu: str = "100m"
    memory: str = "256Mi"
    min_replicas: int = 2
    max_replicas: int = 6
    metrics_port: int = 9100
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    udp_ports: tuple[int, int] | None = None
    public_ip_env: str = "CPC_ICE_ADVERTISED_ADDRESS"
    port_min_env: str = "CPC_ICE_PORT_MIN"
    port_max_env: str = "CPC_ICE_PORT_MAX"

    @property
    def module(self) -> str:
        """What `python -m` runs."""
        return f"services.{self.name}"


class CatalogError(ValueError):
    """deploy/services.toml has a bad entry."""


def load_catalog(path: Path = ROOT / "deploy" / "services.toml") -> list[Entry]:
    """Every entry, gateway last; a bad entry raises CatalogError naming it."""
    tables = tomllib.loads(path.read_text()).get("services", {})
    entries = []
    for name, table in tables.items():
        try:
            entry = msgspec.convert({**table, "name": name}, Entry)
        except msgspec.ValidationError as exc:
            raise CatalogError(f"deploy/services.toml [services.{name}]: {exc}") from None
        if entry.kind == "media" and entry.udp_ports is None:
            raise CatalogError(f"deploy/services.toml [services.{name}]: kind media needs udp_ports")
        for var, ref in entry.secret_env.items():
            if ref.count("/") != 1:
                raise CatalogError(f'[services.{name}] secret_env {var} = "{ref}": want "secret-name/key"')
        entries.append(entry)
    return sorted(entries, key=lambda e: (e.kind == "gateway", e.name))


def services_in_code(root: Path = ROOT) -> set[str]:
    """Names of the service packages that have a `__main__.py`."""
    return {p.parent.name for p in (root / "services").glob("*/__main__.py")}
