"""Time-of-day multiplier for the feeder's background loads (loads that host no prosumer)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

# Hourly residential shape (fraction of the load's nominal kW), a smoothed typical weekday: night trough,
# morning shoulder, evening peak. Values are multipliers of the master file's kW.
_HOURLY = (0.45, 0.40, 0.38, 0.37, 0.38, 0.45, 0.60, 0.72, 0.70, 0.62, 0.58, 0.57,
           0.56, 0.55, 0.56, 0.62, 0.75, 0.90, 1.00, 0.98, 0.90, 0.78, 0.64, 0.52)


def background_multiplier(start: datetime, time_s: float) -> float:
    """Multiplier for background loads at ``time_s`` seconds after ``start`` (linear between hours)."""
    moment = start + timedelta(seconds=time_s)
    hour = moment.hour + moment.minute / 60 + moment.second / 3600
    lo = math.floor(hour) % 24
    frac = hour - math.floor(hour)
    return _HOURLY[lo] * (1 - frac) + _HOURLY[(lo + 1) % 24] * frac
