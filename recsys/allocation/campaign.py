"""Allocate one campaign: problem (``problem``) -> solver (``solver``) -> result (``result``), numpy only.

``allocate_campaign(source, campaign)`` is what the service's ``POST /campaigns``, the ``recsys campaign`` CLI
and the dashboard's campaign builder call with the served cache as the source; the evaluation's campaign
study calls the same solver on a fitted ranker's candidates. The module imports numpy and pydantic only:
the service's workers never load pandas.
"""

from __future__ import annotations

from recsys.allocation.problem import Campaign, CandidateSource, campaign_problem
from recsys.allocation.result import CampaignResult, campaign_result
from recsys.allocation.solver import fill_audiences


def allocate_campaign(source: CandidateSource, campaign: Campaign) -> CampaignResult:
    """Every known product's audience of at most n customers from its candidates, under the campaign's cap."""
    problem = campaign_problem(source, campaign)
    filled = fill_audiences(
        problem.offsets,
        problem.codes,
        problem.scores,
        campaign.n,
        problem.cap,
        campaign.min_audience,
        n_codes=problem.n_customers,
    )
    return campaign_result(problem, filled)
