"""The evaluation protocol: splits, evaluation sets, metrics, references, tuning, intervals, tests, typed results.

Entry point: ``recsys evaluate`` (recsys.evaluation.run); results: recsys.evaluation.results.
"""
