"""python -m services.ingest"""

import sys

from libs.runtime import run_service
from services.ingest.app import IngestConfig, run

sys.exit(run_service("ingest", IngestConfig, run))
