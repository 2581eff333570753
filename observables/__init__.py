"""nnft.observables (being written)."""
