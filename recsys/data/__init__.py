"""Data: the canonical contract, raw-log preparation, the synthetic generator and profile statistics."""
