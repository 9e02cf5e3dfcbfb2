"""ICE settings of an ingest or edge process: which local addresses and UDP ports aioice binds, which
address the answers advertise (behind NAT or a Kubernetes hostPort), and the STUN/TURN servers.

aioice 0.13 gathers host candidates from ``aioice.ice.get_host_addresses`` (which skips 127.0.0.1) and
binds each with ``loop.create_datagram_endpoint(local_addr=(address, 0))`` in
``Connection.get_component_candidates``; `configure_ice` replaces the first and gives the second a port
range. Both are process-wide, set once at start.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import types
from collections.abc import Callable
from typing import Any

import aioice.ice
import msgspec
from aiortc import RTCConfiguration, RTCIceServer

from libs.runtime import ServiceConfig

__all__ = [
    "IceSettings",
    "MediaServiceConfig",
    "advertise",
    "configure_ice",
    "ice_servers",
    "link_headers",
    "rtc_configuration",
    "settings_from",
]


class IceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ICE part of a media service's config."""

    # Local addresses to gather host candidates on; empty: every address but loopback (aioice's rule).
    hosts: list[str] = []
    # UDP ports to bind, inclusive; 0/0: any free port.
    port_min: int = 0
    port_max: int = 0
    # Address written into the candidates we hand out (a public IP in front of a NAT); empty: as bound.
    advertised_address: str = ""
    # STUN/TURN URLs, e.g. stun:stun.example.org:3478 or turn:turn.example.org:3478?transport=udp.
    servers: list[str] = []
    turn_username: str = ""
    turn_password: str = ""


class _PortRangeLoop:
    """The running loop, except that UDP binds asking for port 0 take the next free port of a range."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: Callable[[], int], tries: int) -> None:
        self._loop = loop
        self._ports = ports
        self._tries = tries

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, factory: Any, local_addr: Any = None, **kw: Any) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kw)
        error: OSError | None = None
        for _ in range(self._tries):
            try:
                return await self._loop.create_datagram_endpoint(
                    factory, local_addr=(local_addr[0], self._ports()), **kw
                )
            except OSError as exc:
                error = exc
        raise OSError(f"no free UDP port in the ICE port range: {error}")


def configure_ice(settings: IceSettings) -> None:
    """Apply the host addresses and port range to aioice for this process."""
    if settings.hosts:
        hosts = list(settings.hosts)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(hosts)
    if settings.port_min and settings.port_max:
        if not 0 < settings.port_min <= settings.port_max < 65536:
            raise ValueError(f"ICE port range {settings.port_min}-{settings.port_max} is not valid")
        cycle = itertools.cycle(range(settings.port_min, settings.port_max + 1))
        tries = settings.port_max - settings.port_min + 1
        shim = types.ModuleType("asyncio_ice_ports")
        shim.__dict__.update(asyncio.__dict__)
        shim.get_running_loop = lambda: _PortRangeLoop(asyncio.get_running_loop(), cycle.__next__, tries)  # type: ignore[attr-defined]
        aioice.ice.asyncio = shim  # type: ignore[attr-defined]


def ice_servers(settings: IceSettings) -> list[RTCIceServer]:
    """The configured STUN/TURN servers as aiortc wants them."""
    servers = []
    for url in settings.servers:
        if url.startswith("turn"):
            servers.append(
                RTCIceServer(urls=url, username=settings.turn_username, credential=settings.turn_password)
            )
        else:
            servers.append(RTCIceServer(urls=url))
    return servers


def rtc_configuration(settings: IceSettings) -> RTCConfiguration:
    """The peer connection configuration (no STUN at all unless configured: aiortc defaults to Google's)."""
    return RTCConfiguration(iceServers=ice_servers(settings))


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$", re.MULTILINE)


def advertise(sdp: str, settings: IceSettings) -> str:
    """Rewrite host candidates of an answer to the advertised address (1:1 NAT keeps the port)."""
    if not settings.advertised_address:
        return sdp
    return _CANDIDATE.sub(lambda m: m.group(1) + settings.advertised_address + m.group(3), sdp)


def link_headers(settings: IceSettings) -> list[str]:
    """RFC 9725 section 4.6 Link headers advertising our ICE servers to the client."""
    links = []
    for url in settings.servers:
        link = f'<{url}>; rel="ice-server"'
        if url.startswith("turn") and settings.turn_username:
            link += f'; username="{settings.turn_username}"; credential="{settings.turn_password}"'
            link += '; credential-type="password"'
        links.append(link)
    return links


class MediaServiceConfig(ServiceConfig, frozen=True, kw_only=True):
    """Settings of a service that speaks WebRTC (ingest, edge): CPC_ICE_* (docs/webrtc.md)."""

    ice_hosts: str = ""
    ice_port_min: int = 0
    ice_port_max: int = 0
    ice_advertised_address: str = ""
    ice_servers: str = ""
    ice_turn_username: str = ""
    ice_turn_password: str = ""


def settings_from(config: MediaServiceConfig) -> IceSettings:
    """IceSettings from a service config's flat CPC_ICE_* fields (comma-separated lists)."""

    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    return IceSettings(
        hosts=split(config.ice_hosts),
        port_min=config.ice_port_min,
        port_max=config.ice_port_max,
        advertised_address=config.ice_advertised_address,
        servers=split(config.ice_servers),
        turn_username=config.ice_turn_username,
        turn_password=config.ice_turn_password,
    )
