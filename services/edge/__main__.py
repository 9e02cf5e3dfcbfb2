"""python -m services.edge"""

import sys

from libs.runtime import run_service
from services.edge.app import EdgeConfig, run

sys.exit(run_service("edge", EdgeConfig, run))
