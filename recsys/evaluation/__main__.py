"""`python -m recsys.evaluation`: run the evaluation (see recsys.evaluation.run)."""

from recsys.evaluation.run import main

raise SystemExit(main())
