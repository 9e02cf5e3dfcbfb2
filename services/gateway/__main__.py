"""python -m services.gateway"""

from __future__ import annotations

import sys

import uvicorn

from libs.config import ConfigError, load_config
from libs.obs import configure_logging, configure_tracing, start_metrics_server
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig
from services.gateway.wire import WireProtocol


def main() -> int:
    """Read config, then serve HTTP with uvicorn (its WebSocket path is the fastest we measured)."""
    try:
        config = load_config(GatewayConfig)
    except ConfigError as exc:
        sys.stderr.write(f"gateway: bad setting {exc}\n")
        return 2
    configure_logging("gateway", level=config.log_level, json=config.log_json)
    configure_tracing("gateway")
    start_metrics_server(config.metrics_port, config.metrics_host)
    uvicorn.run(
        create_app(config),
        host=config.http_host,
        port=config.http_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=config.forwarded_allow_ips,
        ws=WireProtocol,  # uvicorn's sans-I/O WebSocket protocol + pre-framed chat writes
        ws_per_message_deflate=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
