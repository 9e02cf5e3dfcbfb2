"""python -m services.notification"""

import sys

from libs.runtime import run_service
from services.notification.app import NotificationConfig, run

sys.exit(run_service("notification", NotificationConfig, run))
