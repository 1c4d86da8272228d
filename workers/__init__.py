"""newsagg workers: discover, fetch, extract, deduplicate and store news articles."""

__version__ = "0.1.0"
