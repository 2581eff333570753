"""The README benchmark table, generated from the checked-in results in benchmarks/results.

Reads every result file (the .json when there is one, else the .md) and prints one markdown
table: benchmark, machine, nnft time, baseline time, ratio (baseline / nnft: above 1 means nnft
is faster), file. A result contributes rows when it states a side-by-side comparison:

- a ``headline`` dict or a ``headlines`` list in its JSON, each with ``what``, ``nnft_s``,
  ``baseline`` (what the baseline is) and ``baseline_s`` (new result files write these);
- or one of the older layouts read below (generation, mcmc_vs_networks, observables,
  default-run markdown).

Results without a measured baseline (GPU ceilings, calibration, the exact theory whose Monte
Carlo times are extrapolated) are left out of the table.

    python benchmarks/readme_table.py [--results DIR]          # print the table
    python benchmarks/readme_table.py --write README.md         # replace it in the README

``--write`` replaces the text between the lines ``<!-- benchmark-table:begin -->`` and
``<!-- benchmark-table:end -->`` of the file (written to a temporary name and renamed); a test
checks that the README's table is the one this script prints.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _row(bench, machine, what, nnft_s, baseline, baseline_s, file):
    return {"benchmark": f"{bench}: {what}" if what else bench, "machine": machine,
            "nnft_s": float(nnft_s), "baseline": baseline, "baseline_s": float(baseline_s),
            "file": file}


def _machine_of(d: dict, stem: str) -> str:
    m = d.get("machine")
    if isinstance(m, str):
        return m
    if isinstance(m, dict) and m.get("cpu"):
        return f"{'-'.join(str(m['cpu']).split()[:2])}-{m.get('cores', '?')}cores"
    if d.get("device"):
        return str(d["device"])
    tag = re.search(r"(AMD-[^.]*|NVIDIA-[^.]*|vm)$", stem)
    return tag.group(1) if tag else "-"


def _from_headlines(d, bench, machine, file):
    heads = d.get("headlines") or ([d["headline"]] if isinstance(d.get("headline"), dict) else [])
    return [_row(bench, machine, h.get("what", ""), h["nnft_s"], h.get("baseline", "-"),
                 h["baseline_s"], file) for h in heads
            if isinstance(h, dict) and h.get("nnft_s") and h.get("baseline_s")]


def _generation(d, bench, machine, file):
    rows = []
    for r in d.get("papers_settings", []):
        nps = r.get("networks_per_s", {})
        if nps.get("nnft_1_thread") and nps.get("papers_loop"):
            rows.append(_row(bench, machine, f"{r['arch']} N={r['width']}, {r['points']} points, "
                             "s per network, 1 thread", 1 / nps["nnft_1_thread"],
                             "papers' loop", 1 / nps["papers_loop"], file))
        if nps.get("fast_1_thread") and nps.get("nnft_1_thread"):
            rows.append(_row(bench, machine, f"{r['arch']} N={r['width']}, {r['points']} points, "
                             "s per network, 1 thread, generator = \"fast\"",
                             1 / nps["fast_1_thread"], "generator = \"reference\" (default)",
                             1 / nps["nnft_1_thread"], file))
    for r in d.get("spectral_vs_exact", []):
        rows.append(_row(bench, machine, f"cos-net L={r['L']}, s per configuration",
                         r["spectral_ms_per_config"] / 1e3, "exact Fourier sampler",
                         r["exact_sampler_ms_per_config"] / 1e3, file))
        if r.get("fast_spectral_ms_per_config"):
            rows.append(_row(bench, machine, f"cos-net L={r['L']}, s per configuration, "
                             "generator = \"fast\"", r["fast_spectral_ms_per_config"] / 1e3,
                             "exact Fourier sampler", r["exact_sampler_ms_per_config"] / 1e3, file))
    return rows


def _mcmc(d, bench, machine, file):
    if d.get("headlines"):
        return _from_headlines(d, bench, machine, file)
    rows = []  # older files: same rule as mcmc_vs_networks.headlines
    for L in sorted({r["L"] for r in d.get("free", [])}):
        net = [r for r in d["free"] if r["L"] == L and r["method"] in ("cos-net N=V",
                                                                         "cos-net N=1V")]
        hmc = [r for r in d["free"] if r["L"] == L and r["method"].startswith("HMC")
               and r.get("tau_reliable", True)]
        if net and hmc:
            best = min(hmc, key=lambda r: r["time_per_indep_sample_s"])
            rows.append(_row(bench, machine, f"free field L={L}: s per independent sample (chi), "
                             "cos-net N=V", net[0]["time_per_indep_sample_s"],
                             f"field {best['method']} (warm-up charged)",
                             best["time_per_indep_sample_s"], file))
    return rows


def _observables(d, bench, machine, file):
    if d.get("measure_pass_s") and d.get("plain_read_s"):
        return [_row(bench, machine, "measuring pass", d["measure_pass_s"], "plain store read",
                     d["plain_read_s"], file)]
    return []


def _default_run_md(text, bench, machine, file):
    rows = []
    for label in ("CPU time (s), best", "wall time (s), best"):
        m = re.search(r"\|\s*" + re.escape(label) + r"\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", text)
        if m:
            kind = label.split(" time")[0]
            commit = re.search(r"old = `[^`]*`[^g]*git ([0-9a-f]{7,})", text)
            rows.append(_row(bench, machine, f"default nnft run ({kind})", m.group(2),
                             f"nnft git {commit.group(1) if commit else '(older)'}", m.group(1),
                             file))
    return rows


def table_rows(results: Path = RESULTS) -> list[dict]:
    """Rows of the table from every result file in ``results`` (sorted by file name)."""
    rows = []
    stems = sorted({p.with_suffix("") for p in results.iterdir() if p.suffix in (".json", ".md")})
    for stem in stems:
        js, md = stem.with_suffix(".json"), stem.with_suffix(".md")
        name = stem.name
        if js.exists():
            try:
                d = json.loads(js.read_text())
            except ValueError:
                continue
            if not isinstance(d, dict):
                continue
            machine, file = _machine_of(d, name), js.name
            bench = re.sub(r"[-_](AMD|NVIDIA|vm).*$", "", name)
            if bench.startswith("generation"):
                rows += _from_headlines(d, bench, machine, file) or _generation(
                    d, bench, machine, file)
            elif bench.startswith("mcmc_vs_networks"):
                rows += _mcmc(d, bench, machine, file)
            elif bench.startswith("observables"):
                rows += _from_headlines(d, bench, machine, file) or _observables(
                    d, bench, machine, file)
            elif bench.startswith("exact"):  # Monte Carlo times there are extrapolated
                rows += _from_headlines(d, bench, machine, file)
            else:
                rows += _from_headlines(d, bench, machine, file)
        elif md.exists() and name.startswith("default-run"):
            bench = re.sub(r"-(AMD|NVIDIA).*$", "", name)
            tag = re.search(r"(AMD-[^.]*|NVIDIA-[^.]*)$", name)
            rows += _default_run_md(md.read_text(), bench, tag.group(1) if tag else "-", md.name)
    return rows


def _t(s: float) -> str:
    return f"{s:.3g} s" if s >= 1e-3 else f"{s * 1e6:.3g} us"


def markdown(rows: list[dict]) -> str:
    out = ["| benchmark | machine | nnft time | baseline | baseline time | ratio | file |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['benchmark']} | {r['machine']} | {_t(r['nnft_s'])} | {r['baseline']} "
                   f"| {_t(r['baseline_s'])} | {r['baseline_s'] / r['nnft_s']:.2f} | "
                   f"[{r['file']}](benchmarks/results/{r['file']}) |")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- benchmark-table:begin -->", "<!-- benchmark-table:end -->"
PREAMBLE = ("ratio = baseline time / nnft time (above 1: nnft faster); times as measured, "
            "side by side on the machine named.\n")


def table_text(results: Path = RESULTS) -> str:
    """The preamble and the markdown table, as printed."""
    return PREAMBLE + "\n" + markdown(table_rows(Path(results)))


def replace_block(text: str, table: str) -> str:
    """``text`` with the lines between the BEGIN and END markers replaced by ``table``."""
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        raise SystemExit(f"readme_table: markers {BEGIN} ... {END} not found (in that order)")
    return text[:i + len(BEGIN)] + "\n" + table + text[j:]


def main(argv=None):
    import os
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS), help="folder of the result files")
    ap.add_argument("--write", default=None, help="a markdown file whose marked block to replace")
    a = ap.parse_args(argv)
    table = table_text(Path(a.results))
    if a.write is None:
        print(table, end="")
        return
    path = Path(a.write)
    new = replace_block(path.read_text(), table)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)
    print(f"readme_table: table written into {path}")


if __name__ == "__main__":
    main()
