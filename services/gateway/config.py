"""Gateway settings, read once at start (CPC_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

__all__ = ["GatewayConfig"]

# The built web app (npm run build in web/); the container sets CPC_WEB_ROOT=/app/web.
DEFAULT_WEB_ROOT = str(Path(__file__).resolve().parents[2] / "web" / "dist")


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    log_level: str = "info"
    log_json: bool | None = None
    # Services /readyz waits for; a comma-separated list of NATS service names.
    required_services: str = "identity,channel,social,notification,ingest,edge,transcode,chat"
    request_timeout_seconds: float = 5.0
    max_json_body_bytes: int = 64 * 1024
    max_image_body_bytes: int = 4 * 1024 * 1024
    cors_origins: str = ""
    forwarded_allow_ips: str = "127.0.0.1"
    public_base_url: str = ""
    # Operator API (grants, simulated sessions, ...): callers send `X-Operator-Token`. Empty turns it off.
    operator_token: str = ""
    # Chat fan-out: room frames are gathered chat_coalesce_ms before one write per socket, longer in rooms
    # so big that this would exceed chat_write_budget socket writes per second (up to
    # chat_coalesce_max_ms); a socket with more than chat_max_pending writes waiting, or more than
    # chat_max_buffer_bytes unsent in its send buffer, is disconnected; the hello frame must come within
    # the timeout.
    chat_coalesce_ms: float = 20.0
    chat_coalesce_max_ms: Annotated[float, msgspec.Meta(ge=0)] = 100.0
    chat_write_budget: Annotated[float, msgspec.Meta(gt=0)] = 100_000.0
    chat_max_pending: int = 256
    chat_max_buffer_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1 << 20
    chat_hello_timeout_seconds: float = 10.0
    # Folder of the built web app served at /.
    web_root: str = DEFAULT_WEB_ROOT

    def required(self) -> list[str]:
        """Names of the services /readyz checks."""
        return [s.strip() for s in self.required_services.split(",") if s.strip()]
