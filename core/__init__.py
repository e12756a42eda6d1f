"""The base layer: audit plumbing, database time, settings helpers, Redis, pagination, errors and hooks.

It imports no app of this project; every app may import it.
"""
