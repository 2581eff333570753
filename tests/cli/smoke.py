"""Smoke sizes of the example configs, shared by the example tests and the baseline recorder."""
import tomllib

# (--samples, --widths); widths None keeps the example's own
SMOKE = {"halverson2008_nngp": (1500, "4"), "halverson2008_nngp_gpu": (1000, "4"),
         "maiti2106_symmetry": (1000, "5"), "cosnet_free_scalar": (1000, "4"),
         "bayesian_rg": (400, "16"), "cosnet_phi4_reweighting": (2000, "16,256"),
         "mcmc_comparison": (400, None), "cosnet_phi4_param_mcmc": (800, None)}
DEFAULT_SMOKE = (1000, "4,16")


def SMOKE_ARGS(path):
    """Command-line arguments that run example ``path`` at its smoke size on the CPU."""
    samples, widths = SMOKE.get(path.stem, DEFAULT_SMOKE)
    args = ["--samples", str(samples)]
    if widths:
        args += ["--widths", widths]
    with open(path, "rb") as f:
        if tomllib.load(f).get("backend") in ("cupy", "auto"):
            args += ["--backend", "numpy"]
    return args


def _is_timing(key):
    """Timing entries, output paths (they name the run's temporary folder), the machine."""
    k = str(key).lower()
    return k in ("timings", "plot", "plots", "path", "store", "machine") or k.endswith("_s") or any(t in k for t in ("wall", "seconds", "cost", "per_s", "rate_s"))


def strip_timings(obj):
    """``obj`` without timing entries (wall-clock numbers differ between runs) and paths."""
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if not _is_timing(k)}
    if isinstance(obj, list):  # summary rows (label, value, error) that report a timing
        return [strip_timings(v) for v in obj
                if not (isinstance(v, list) and v and isinstance(v[0], str)
                        and any(t in v[0] for t in (" us ", "wall", "seconds", " time ")))]
    return obj
