"""The eft width scan in `nnft run`'s summary and report (synthetic per-width rows)."""
import json

import numpy as np

from nnft.measurements import width_scan_summary
from nnft.report import render_markdown, write_report


def _rows(widths, exponent, seed=0):
    """eft rows whose lambda falls as 1/N and residual/kappa as N^exponent, 3 % errors."""
    rng = np.random.default_rng(seed)
    rows = {}
    for w in widths:
        lam, res = -0.16 / w, 27.0 * w ** exponent
        rows[w] = {"generate_s": 0.0, "eft": {
            "chosen": "lambda", "g6_model": "lambda^2+kappa", "verdict": "inconsistent",
            "criterion": "bic", "g6_heavy_tail": False, "g4_heavy_tail": False,
            "lam": lam * (1 + 0.03 * rng.standard_normal()), "lam_error": 0.03 * abs(lam),
            "kappa": res / 90 * (1 + 0.03 * rng.standard_normal()),
            "kappa_error": 0.03 * res / 90,
            "g6_residual": res * (1 + 0.03 * rng.standard_normal()), "g6_residual_error":
            0.03 * res, "g6_free_residual": res, "g6_free_residual_error": 0.03 * res}}
    return rows


def _results(widths, rows):
    return {"title": "t", "backend": "numpy", "timings": {"total_s": 0.0}, "ensembles": {
        "relu": {"arch": "ReLUNet", "params": {}, "samples": 10, "widths": widths,
                 "lattice": {"kind": "points", "points": [[0.2], [0.4]]},
                 "per_width": rows, "scaling": width_scan_summary(widths, rows)}}}


def test_report_shows_eft_scan_and_relevance(tmp_path):
    widths = [2, 4, 8, 16]
    res = _results(widths, _rows(widths, -2.0))
    sc = res["ensembles"]["relu"]["scaling"]["eft"]
    assert sc["verdict"] == "consistent"
    md = write_report(res, tmp_path).read_text()
    assert "## Relevant couplings by architecture" in md
    assert "| relu | ReLUNet | 2, 4, 8, 16 | lambda | lambda^2+kappa |" in md
    assert "G6c residual falls as 1/N^2: consistent" in md
    assert "relevant couplings: G4c: lambda at N = 2, 4, 8, 16" in md
    assert (tmp_path / "plots" / "relu-eft.png").stat().st_size > 0
    json.dumps(sc)  # results.json-ready


def test_report_flags_wrong_law_and_single_width(tmp_path):
    """Companion: a residual falling as 1/N is reported inconsistent with 1/N^2; with fewer
    than three widths there is no scan, but the per-width table and relevance still show."""
    widths = [2, 4, 8, 16]
    res = _results(widths, _rows(widths, -1.0))
    assert res["ensembles"]["relu"]["scaling"]["eft"]["verdict"] == "inconsistent"
    md = render_markdown(res, {}, tmp_path)
    assert "G6c residual falls as 1/N^2: inconsistent" in md
    one = _results([4], {4: _rows([4], -2.0)[4]})
    assert "eft" not in one["ensembles"]["relu"]["scaling"]
    md = render_markdown(one, {}, tmp_path)
    assert "| relu | ReLUNet | 4 | lambda | lambda^2+kappa | - |" in md
    assert "falls as 1/N^2" not in md
