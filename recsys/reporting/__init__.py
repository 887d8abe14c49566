"""Reporting: notebook execution, figures, exploration facts and the generated results summary."""
