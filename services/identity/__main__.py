"""python -m services.identity"""

from libs.runtime import main
from services.identity.app import run

main(run)
