"""The audience cache: ``build`` writes it (pandas/pyarrow), ``lookup`` reads it (numpy only, for the service)."""
