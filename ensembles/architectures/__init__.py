"""Plug-in architectures: every module in this folder is imported with ``nnft.ensembles``.

To add an architecture, copy ``sine.py``: one frozen dataclass spec registered with
:func:`nnft.ensembles.specs.register_architecture`, listed in the module's ``__all__``; it is
then known to configs (``arch = "SineNet"``), stores and ``spec_from_dict``, and exported from
``nnft.ensembles``. Nothing else needs editing.
"""
from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
