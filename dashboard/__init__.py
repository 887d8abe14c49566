"""The dashboard: a Voilà app (``app.ipynb``) over the pipeline's artifacts, one tab per module.

``app.ipynb`` only loads the data once (``artifacts``) and composes the tabs (``app_layout``: the header and
``TABS``, each tab a module with ``build(data) -> ipywidgets.Widget``; today ``explorer``, the audience explorer).
Modules, one job each: ``settings`` (paths, environment, hints), ``artifacts`` (loading what the pipeline
produced), ``search`` (product index and search), ``audience`` (audience table, diff, CSV), ``whatif`` (today's
re-ranking under new weights), ``exposure`` (served exposure counts, the cache's exposure metrics and the
frequency-cap what-if), ``explain`` (the words next to each figure: score scales, exposures, weights),
``metrics_view`` (the typed evaluation summary and the explore facts), ``render`` (HTML fragments),
``explorer`` (the explorer tab's widgets and callbacks) and ``serve`` (the Voilà launcher, ``python -m dashboard``).
Everything a tab shows is computed by functions tested without a browser.
"""
