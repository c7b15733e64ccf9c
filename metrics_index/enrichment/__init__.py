"""Turning raw metric metadata into the enriched, vocabulary-checked catalog record."""
