"""Features: per-customer engagement (``engagement``) and product-name text (``text``)."""
