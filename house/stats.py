"""Is a difference beyond seed noise? The one rule every table of this repo uses (README, "Beyond seed noise").

The seed sets a tiny run's init and data order, and moves its score by more than most recipe changes do. So a
change is compared with the baseline run of THE SAME SEED, and the per-seed differences d_1 … d_n are tested
with a paired t-test, two-sided at 95 %:

    t = mean(d) / (sd(d) / √n),   beyond seed noise when |t| > t_crit(n − 1)

t_crit is Student's t quantile, not 2: with 3 seeds it is 4.30, with 4 seeds 3.18 (with 30 it is 2.05).
Where two sets of runs are not paired (different seeds, or timings taken apart), `welch` compares their
means with Welch's unpaired t (each side's own variance, Welch–Satterthwaite degrees of freedom).
bench/knobs.py, bench/linnet_plus.py and exercises/ablation.py (the experiment report) all call this file.

    >>> v = paired([0.0057, 0.0066, 0.0086])        # three seeds' differences, all of one sign, close together
    >>> round(v.t, 2), round(v.critical, 3), v.beyond
    (8.13, 4.303, True)
    >>> paired([0.0134, 0.0136, 0.0019]).label()    # mean 2.49 standard errors away: not enough with 3 seeds
    'no (t = 2.49 < 4.30, n = 3)'
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


# --- Student's t, from the regularised incomplete beta function (no scipy needed) ----------------------------

def incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), by its continued fraction (Lentz's method), on the side where it converges fast."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - incomplete_beta(b, a, 1.0 - x)
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b)) / a
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        num = 1.0 if i == 0 else (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)) if i % 2 == 0 else
                                  -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)))
        d = 1.0 / (1.0 + num * d or 1e-300)
        c = 1.0 + num / c or 1e-300
        f *= c * d
        if abs(1.0 - c * d) < 1e-14:
            break
    return front * (f - 1.0)


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with df degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    return incomplete_beta(df / 2, 0.5, df / (df + t * t))


def t_critical(df: float, level: float = 0.95) -> float:
    """The two-sided critical value: |T| exceeds it with probability 1 − level (df 2: 4.303, df 3: 3.182)."""
    if not df > 0:
        raise ValueError(f"a t-test needs more than 0 degrees of freedom, got {df}")
    low, high = 0.0, 1e4
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_two_sided_p(mid, df) > 1 - level else (low, mid)
    return (low + high) / 2


# --- The verdicts -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """One test's numbers: the mean difference, its sd (paired: of the differences), t, df, the cutoff, p."""
    n: int
    mean: float
    sd: float
    t: float
    df: float
    critical: float
    p: float
    test: str = "paired t"

    @property
    def beyond(self) -> bool:
        return not math.isnan(self.t) and abs(self.t) > self.critical

    def label(self) -> str:
        """'yes (t = 8.13 > 4.30, n = 3)' — what a table's "beyond seed noise?" column says."""
        if math.isnan(self.t):
            return f"— (n = {self.n}: too few to test)"
        sign = ">" if self.beyond else "<"
        return f"{'yes' if self.beyond else 'no'} (t = {abs(self.t):.2f} {sign} {self.critical:.2f}, n = {self.n})"


def _t_and_p(mean: float, se: float, df: float) -> tuple[float, float]:
    if se == 0:
        return (math.copysign(math.inf, mean), 0.0) if mean else (0.0, 1.0)
    t = mean / se
    return t, t_two_sided_p(t, df)


def paired(deltas: list[float], level: float = 0.95) -> Verdict:
    """Paired t over seeds: `deltas` are (run with the change − baseline run of the same seed), one per seed."""
    n = len(deltas)
    if n < 2:
        nan = math.nan
        return Verdict(n, deltas[0] if deltas else nan, nan, nan, nan, nan, nan)
    mean, sd = statistics.fmean(deltas), statistics.stdev(deltas)
    t, p = _t_and_p(mean, sd / math.sqrt(n), n - 1)
    return Verdict(n, mean, sd, t, n - 1, t_critical(n - 1, level), p)


def welch(a: list[float], b: list[float], level: float = 0.95) -> Verdict:
    """Welch's unpaired t for mean(a) − mean(b), where the runs are not paired (the sd reported is a's)."""
    if len(a) < 2 or len(b) < 2:
        nan = math.nan
        return Verdict(len(a) + len(b), nan, nan, nan, nan, nan, nan, "Welch t")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    mean = statistics.fmean(a) - statistics.fmean(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
    t, p = _t_and_p(mean, math.sqrt(va + vb), df)
    return Verdict(len(a) + len(b), mean, math.sqrt(statistics.variance(a)), t, df, t_critical(df, level), p, "Welch t")
