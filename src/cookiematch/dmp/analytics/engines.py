"""The analytics engine a deployment configured (``[dmp.analytics] engine``), opened. Spark's
module is imported only when chosen: ``pyspark`` is an optional extra (``.[spark]``)."""

from __future__ import annotations

from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.settings import AnalyticsSettings


def open_engine(settings: AnalyticsSettings, *, max_events_per_name: int = 50) -> AnalyticsEngine:
    """``settings.engine``'s engine over ``settings.path``."""
    if settings.engine == "spark":
        from cookiematch.dmp.analytics.spark_engine import SparkEngine

        return SparkEngine(settings, max_events_per_name=max_events_per_name)
    from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine

    return DuckDBEngine(settings, max_events_per_name=max_events_per_name)
