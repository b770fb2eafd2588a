"""`make bench`: database round trips, cold start and scale of this template against the seed configuration.

Run with ``python -m devtools.bench`` (the stack must be up and migrated: ``make bench`` does both).
"""
