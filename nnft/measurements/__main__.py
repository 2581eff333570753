"""``python -m nnft.measurements``: print docs/measurements.md (generated from the registry)."""
from . import registry_markdown

print(registry_markdown())
