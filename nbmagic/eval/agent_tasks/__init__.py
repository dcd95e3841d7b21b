"""Question sets of the agent evaluation kept as data: ``external`` (frozen, hashed) and ``multipart``."""
