"""python -m services.chat"""

import sys

from libs.runtime import run_service
from services.chat.app import ChatConfig, run

sys.exit(run_service("chat", ChatConfig, run))
