"""python -m services.transcode"""

import sys

from libs.runtime import run_service
from services.transcode.app import TranscodeConfig, run

sys.exit(run_service("transcode", TranscodeConfig, run))
