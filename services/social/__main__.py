"""python -m services.social"""

import sys

from libs.runtime import run_service
from services.social.app import run
from services.social.config import SocialConfig

sys.exit(run_service("social", SocialConfig, run))
