"""python -m services.channel"""

import sys

from libs.runtime import run_service
from services.channel.app import run
from services.channel.config import ChannelConfig

sys.exit(run_service("channel", ChannelConfig, run))
