"""Is a difference beyond seed noise? The one rule every table of this repo uses (README, "Beyond seed noise").

The seed sets a tiny run's init and data order, and moves its score by more than most recipe changes do. So a
change is compared with the baseline run of THE SAME SEED, and the per-seed differences d_1 … d_n are tested
with a paired t-test, two-sided at 95 %:

    t = mean(d) / (sd(d) / √n),   beyond seed noise when |t| > t_crit(n − 1)

t_crit is Student's t quantile, not 2: with 3 seeds it is 4.30, with 4 seeds 3.18 (with 30 it is 2.04).
Where two sets of runs are not paired (different seeds, or timings taken apart), `welch` compares their
means with Welch's unpaired t (each side's own variance, Welch–Satterthwaite degrees of freedom).

    >>> v = paired([0.0057, 0.0066, 0.0086])        # three seeds' differences, all of one sign, close together
    >>> round(v.t, 2), v.critical, v.beyond
    (8.13, 4.3, True)
    >>> paired([0.0134, 0.0136, 0.0019]).label()    # mean 2 standard errors away: not enough with 3 seeds
    'no (t = 2.49 < 4.30, n = 3)'
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 95 % critical values of Student's t by degrees of freedom (any statistics table; scipy's
# t.ppf(0.975, df) rounded to 2 decimals). Between rows the smaller df's value is used: never too lenient.
T_CRITICAL_95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
                 11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09,
                 20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00, 120: 1.98}


def t_critical(df: float) -> float:
    """Two-sided 95 % critical value of Student's t with `df` degrees of freedom (df ≥ 1; a fraction rounds down)."""
    if not df >= 1:
        raise ValueError(f"a t-test needs at least 1 degree of freedom, got {df}")
    return T_CRITICAL_95[max(k for k in T_CRITICAL_95 if k <= df)]


@dataclass(frozen=True)
class Verdict:
    """One test's numbers: the mean difference, its sd (paired: of the differences), t, the cutoff, the test."""
    n: int
    mean: float
    sd: float
    t: float
    critical: float
    test: str = "paired t"

    @property
    def beyond(self) -> bool:
        return not math.isnan(self.t) and abs(self.t) > self.critical

    def label(self) -> str:
        """'yes (t = 7.97 > 4.30, n = 3)' — what a table's "beyond seed noise?" column says."""
        if math.isnan(self.t):
            return f"— (n = {self.n}: too few to test)"
        sign = ">" if self.beyond else "<"
        return f"{'yes' if self.beyond else 'no'} (t = {abs(self.t):.2f} {sign} {self.critical:.2f}, n = {self.n})"


def _t(mean: float, se: float) -> float:
    if se == 0:
        return 0.0 if mean == 0 else math.inf
    return mean / se


def paired(deltas: list[float]) -> Verdict:
    """Paired t over seeds: `deltas` are (run with the change − baseline run of the same seed), one per seed."""
    n = len(deltas)
    if n < 2:
        return Verdict(n, deltas[0] if deltas else math.nan, math.nan, math.nan, math.nan)
    mean, sd = statistics.fmean(deltas), statistics.stdev(deltas)
    return Verdict(n, mean, sd, _t(mean, sd / math.sqrt(n)), t_critical(n - 1))


def welch(a: list[float], b: list[float]) -> Verdict:
    """Welch's unpaired t for mean(a) − mean(b), where the runs are not paired (the sd reported is a's)."""
    if len(a) < 2 or len(b) < 2:
        return Verdict(len(a) + len(b), math.nan, math.nan, math.nan, math.nan, "Welch t")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    mean = statistics.fmean(a) - statistics.fmean(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
    return Verdict(len(a) + len(b), mean, math.sqrt(statistics.variance(a)), _t(mean, math.sqrt(va + vb)),
                   t_critical(df), "Welch t")
