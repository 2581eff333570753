"""benchmarks/readme_table.py: the README benchmark table from the checked-in results."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "readme_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("readme_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_runs_on_the_checked_in_results():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert lines[0] == ("| benchmark | machine | nnft time | baseline | baseline time | ratio "
                        "| file |")
    body = lines[2:]
    assert len(body) >= 5
    for ln in body:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == 7, ln
        assert float(cells[5]) > 0
        target = cells[6].split("](")[1].rstrip(")")
        assert (ROOT / target).exists(), target  # every row links a checked-in file


def test_headline_rows_and_ratio(tmp_path):
    (tmp_path / "thing-AMD-EPYC-2cores.json").write_text(json.dumps({
        "machine": "AMD-EPYC-2cores",
        "headline": {"what": "a pass", "nnft_s": 2.0, "baseline": "old", "baseline_s": 4.0}}))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "nobaseline-AMD-EPYC-2cores.json").write_text(json.dumps({"wall_s": 3.0}))
    mod = _module()
    rows = mod.table_rows(tmp_path)
    assert [(r["benchmark"], r["machine"], r["nnft_s"], r["baseline_s"]) for r in rows] == [
        ("thing: a pass", "AMD-EPYC-2cores", 2.0, 4.0)]
    md = mod.markdown(rows)
    assert "| 2.00 |" in md  # ratio = baseline / nnft
    # companion: swapping the two times must flip the ratio (the column is not a constant)
    rows[0]["nnft_s"], rows[0]["baseline_s"] = 4.0, 2.0
    assert "| 0.50 |" in mod.markdown(rows)


def test_default_run_markdown_is_read(tmp_path):
    (tmp_path / "default-run-AMD-EPYC-2cores.md").write_text(
        "old = `/x` (git 5b3ef5e), new\n\n| | old | new | old / new |\n|---|---|---|---|\n"
        "| wall time (s), best | 90.0 | 30.0 | 3.00 |\n| CPU time (s), best | 60.0 | 25.0 | 2.40 |\n")
    rows = _module().table_rows(tmp_path)
    got = {r["benchmark"]: (r["nnft_s"], r["baseline_s"], r["baseline"]) for r in rows}
    assert got == {"default-run: default nnft run (CPU)": (25.0, 60.0, "nnft git 5b3ef5e"),
                   "default-run: default nnft run (wall)": (30.0, 90.0, "nnft git 5b3ef5e")}


def test_readme_table_is_the_generated_one():
    """README.md's benchmark table is exactly what the script prints from benchmarks/results
    (regenerate with `python benchmarks/readme_table.py --write README.md`)."""
    mod = _module()
    text = (ROOT / "README.md").read_text()
    assert mod.BEGIN in text and mod.END in text
    assert mod.replace_block(text, mod.table_text()) == text


def test_replace_block_needs_the_markers():
    import pytest

    mod = _module()
    assert mod.replace_block(f"a\n{mod.BEGIN}\nold\n{mod.END}\nb", "T\n") == \
        f"a\n{mod.BEGIN}\nT\n{mod.END}\nb"
    with pytest.raises(SystemExit):
        mod.replace_block("no markers", "T\n")
