"""python -m services.transcode"""

import sys

from libs.runtime import run_service
from services.transcode.app import run
from services.transcode.config import TranscodeConfig

sys.exit(run_service("transcode", TranscodeConfig, run))
