"""python -m services.ingest"""

import sys

from libs.runtime import run_service
from services.ingest.app import run
from services.ingest.config import IngestConfig

sys.exit(run_service("ingest", IngestConfig, run))
