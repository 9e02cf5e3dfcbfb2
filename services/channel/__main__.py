"""python -m services.channel"""

from __future__ import annotations

import sys

from libs.config import ConfigError, load_config
from libs.runtime import main
from services.channel.app import ChannelConfig, run


def start() -> int:
    """Read config, then run the service until SIGTERM or SIGINT."""
    try:
        config = load_config(ChannelConfig)
    except ConfigError as exc:
        sys.stderr.write(f"channel: bad setting {exc}\n")
        return 2
    main(lambda: run(config))
    return 0


if __name__ == "__main__":
    sys.exit(start())
