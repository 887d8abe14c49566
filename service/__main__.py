"""`python -m service`: serve the audience cache (configure with RECSYS_* environment variables)."""

import sys

from service.main import main

sys.exit(main())
