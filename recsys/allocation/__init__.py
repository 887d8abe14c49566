"""Audiences under frequency caps, one module per job (import the module you need: this package imports nothing).

- ``problem``: ``Campaign`` (typed settings) and ``campaign_problem(source, campaign)``, the instance over a
  ``CandidateSource`` (the served cache, a fitted ranker's candidates);
- ``solver``: ``match`` / ``fill_audiences``, greedy b-matching of ranked candidate lists under per-product slots
  and a per-customer cap (the one solver of every allocation);
- ``result``: ``CampaignResult`` and its typed figures (per-product outcome, exposure, what the cap costs);
- ``campaign``: ``allocate_campaign(source, campaign)`` = problem -> solver -> result (numpy and pydantic only:
  the service imports it);
- ``catalogue``: the catalogue-wide frequency cap of the cache (``cache.allocation.max_exposures``, off by
  default): the solver on every product's candidates, then fill-ins from the ranker's shared order;
- ``exposure``: exposure metrics of any set of audiences (pandas; the cache and the reports);
- ``arrays``: numpy helpers (CSR ranges, runs, sorted membership).
"""
