"""Sendstream's domain: aggregates, value objects and pure rules. No I/O lives here."""
