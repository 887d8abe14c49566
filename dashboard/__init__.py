"""The audience explorer: a Voilà dashboard (``app.ipynb``) over the pipeline's artifacts.

Modules, one job each: ``settings`` (paths, environment, hints), ``artifacts`` (loading what the
pipeline produced), ``search`` (product index and search), ``audience`` (audience table, diff, CSV),
``whatif`` (today's re-ranking under new weights), ``exposure`` (served exposure counts, the cache's
exposure metrics and the frequency-cap what-if), ``metrics_view`` (the typed evaluation summary and the
explore facts), ``render`` (HTML fragments) and ``serve`` (the Voilà launcher, ``python -m dashboard``).
The notebook holds widgets and callbacks only, so everything it shows is tested without a browser.
"""
