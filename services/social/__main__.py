"""python -m services.social"""

import sys

from libs.runtime import run_service
from services.social.app import SocialConfig, run

sys.exit(run_service("social", SocialConfig, run))
