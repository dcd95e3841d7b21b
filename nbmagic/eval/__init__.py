"""Evaluations: ``python -m nbmagic.eval rlm --model SPEC``.

Each evaluation generates its own data (nothing is downloaded) and scores exact
answers, so figures can be compared across models and releases.
"""
