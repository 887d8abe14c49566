"""Audience ranking for high-churn marketplaces: which N customers to target for every product."""

__version__ = "0.1.0"
