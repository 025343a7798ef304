"""Use reward models at inference: step aggregation, best-of-N and voting, PRM-guided beam search."""
