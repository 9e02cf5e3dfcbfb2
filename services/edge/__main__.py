"""python -m services.edge"""

import sys

from libs.runtime import run_service
from services.edge.app import run
from services.edge.config import EdgeConfig

sys.exit(run_service("edge", EdgeConfig, run))
