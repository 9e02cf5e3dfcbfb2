"""python -m services.identity"""

import sys

from libs.runtime import run_service
from services.identity.app import run
from services.identity.config import IdentityConfig

sys.exit(run_service("identity", IdentityConfig, run))
