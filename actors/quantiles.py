"""Recent-sample quantiles as the HTTP API's status and ``/metrics`` show them (Prometheus summary style)."""

from __future__ import annotations

from collections.abc import Collection

QUANTILES = (0.5, 0.9, 0.99)


def quantiles(values: Collection[float]) -> dict[str, float]:
    """``{"0.5": p50, "0.9": p90, "0.99": p99}`` of ``values`` (nearest rank, rounded to the microsecond);
    empty when there are none."""
    if not values:
        return {}
    ordered = sorted(values)
    return {str(q): round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 6) for q in QUANTILES}
