"""nnft.ensembles (being written)."""
