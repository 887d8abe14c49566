"""Evaluation building blocks: temporal split, coded evaluation sets, metrics, references, reports."""
