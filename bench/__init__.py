"""Reproducible benchmarks: ``python -m bench`` prints a table of figures and the machine."""
