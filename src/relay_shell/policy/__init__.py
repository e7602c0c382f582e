"""Grammar-aware classification of everything a call runs (parse, normalise, classify, decide)."""
