r"""Statistics of a campaign's runs over seeds: mean and standard deviation, the 95 %
t-interval of a mean (for paired differences between arms), and Welch's 95 % interval
of a difference between two means (for differences between campaigns).

For values \(x_1, \dots, x_n\) with mean \(\bar x\) and sample standard deviation
\(s = \sqrt{\sum_i (x_i - \bar x)^2 / (n - 1)}\), the interval is

\[
\bar x \pm t_{0.975,\,n-1}\, s / \sqrt{n}
\]

with Student's t quantile from `T95` (for degrees of freedom between its entries,
the next lower entry's, so the interval errs wide; beyond 30, the normal's 1.96).
For two independent samples \(a\) and \(b\) of unequal variances, Welch's interval of
\(\bar a - \bar b\) is

\[
\bar a - \bar b \pm t_{0.975,\,\nu} \sqrt{s_a^2 / n_a + s_b^2 / n_b},
\qquad
\nu = \frac{(s_a^2 / n_a + s_b^2 / n_b)^2}
           {(s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1)}
\]

(Welch-Satterthwaite degrees of freedom \(\nu\), rounded down to `T95`'s entries).

```python
from lns_larq import stats

stats.t_interval([0.4, 1.1, 0.7])  # (0.733..., 0.872...): mean and half-width
stats.welch_interval([0.4, 1.1, 0.7], [0.1, 0.3])  # (0.533..., ...): difference and half-width
```
"""

import math
import statistics
from collections.abc import Sequence

__all__ = ["T95", "mean_std", "t_interval", "welch_interval"]

# Two-sided 95 % quantiles of Student's t, by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of `values`; the deviation of one value is 0,
    both are nan for none."""
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval of the mean of `values` (the
    half-width is nan for fewer than 2 values)."""
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return mean, float("nan")
    return mean, _t95(n - 1) * std / math.sqrt(n)


def welch_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Difference of the means of `a` and `b` (a minus b) and the half-width of its
    95 % Welch interval (nan unless both have 2 values or more)."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    if len(a) < 2 or len(b) < 2:
        return mean_a - mean_b, float("nan")
    var_a, var_b = std_a**2 / len(a), std_b**2 / len(b)
    if var_a + var_b == 0:
        return mean_a - mean_b, 0.0
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    return mean_a - mean_b, _t95(dof) * math.sqrt(var_a + var_b)


def _t95(dof: float) -> float:
    """Student's two-sided 95 % quantile at `dof` degrees of freedom (at least 1): the
    next lower entry of `T95`, so intervals err wide; beyond 30, the normal's."""
    return T95[max(k for k in T95 if k <= max(dof, 1))] if dof <= 30 else 1.96
