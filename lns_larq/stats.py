r"""Statistics of a campaign's runs over seeds: mean and standard deviation, and the 95 %
t-interval of a mean, for paired differences between arms.

For values \(x_1, \dots, x_n\) with mean \(\bar x\) and sample standard deviation
\(s = \sqrt{\sum_i (x_i - \bar x)^2 / (n - 1)}\), the interval is

\[
\bar x \pm t_{0.975,\,n-1}\, s / \sqrt{n}
\]

with Student's t quantile from `T95` (for degrees of freedom between its entries,
the next lower entry's, so the interval errs wide; beyond 30, the normal's 1.96).

```python
from lns_larq import stats

stats.t_interval([0.4, 1.1, 0.7])  # (0.733..., 0.872...): mean and half-width
```
"""

import math
import statistics
from collections.abc import Sequence

__all__ = ["T95", "mean_std", "t_interval"]

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
    t = T95[max(k for k in T95 if k <= n - 1)] if n - 1 <= 30 else 1.96
    return mean, t * std / math.sqrt(n)
