"""Report plotting internals: log axes saved without mathtext, error bars as three lines."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import mathtext  # noqa: E402

from nnft.report import _errorbar, _savefig  # noqa: E402


def _log_figure():
    fig, ax = plt.subplots()
    x = np.linspace(0.0, 4.0, 40)
    _errorbar(ax, x, 1 / (x + 0.05), 0.1 / (x + 0.05), label="N = 2")
    ax.set_xscale("symlog", linthresh=0.05)
    ax.set_yscale("log")
    ax.legend(loc="upper right")
    return fig, ax


@pytest.fixture
def no_mathtext(monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError("mathtext parser called")

    monkeypatch.setattr(mathtext.MathTextParser, "parse", refuse)


def test_savefig_needs_no_mathtext(tmp_path, no_mathtext):
    fig, ax = _log_figure()
    _savefig(fig, tmp_path / "p.png")
    plt.close(fig)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and not any("$" in s for s in labels)


def test_default_log_labels_do_use_mathtext(tmp_path, no_mathtext):
    """Companion: matplotlib's own labels on the same figure go through the parser, so the test
    above would fail if _savefig left them in place."""
    fig, _ = _log_figure()
    with pytest.raises(AssertionError, match="mathtext"):
        fig.savefig(tmp_path / "q.png")
    plt.close(fig)


def test_errorbar_lines_span_value_plus_minus_error():
    fig, ax = plt.subplots()
    x, y, e = np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0, 7.0]), np.array([0.5, 1.0, 2.0])
    pts = _errorbar(ax, x, y, e, label="data")
    lines = ax.get_lines()
    assert len(lines) == 3 and lines[0] is pts and pts.get_label() == "data"
    bx, by = lines[1].get_xdata(), lines[1].get_ydata()
    np.testing.assert_array_equal(bx.reshape(3, 3)[:, :2], np.repeat(x, 2).reshape(3, 2))
    np.testing.assert_array_equal(by.reshape(3, 3)[:, :2], np.stack([y - e, y + e], 1))
    assert np.isnan(by.reshape(3, 3)[:, 2]).all()  # one break per bar
    np.testing.assert_array_equal(np.sort(lines[2].get_ydata()), np.sort(np.r_[y - e, y + e]))
    assert {ln.get_color() for ln in lines} == {pts.get_color()}
    plt.close(fig)
