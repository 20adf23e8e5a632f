"""One Spark session (local mode, two task threads) for the whole test run: started by the
first test that asks for it, stopped at the end. Spark needs Java 17 or later (``java`` on the
path or ``JAVA_HOME``) and ``pyspark`` (the ``spark`` extra, installed by ``make test``); a
machine without them fails these tests, it never skips them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.spark_engine import spark_session

SPARK_START_TIMEOUT = 600  # seconds: the JVM's start on a loaded 2-core machine


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    root: Path = tmp_path_factory.mktemp("spark")
    session = spark_session(AnalyticsSettings(str(root / "tables"), memory_limit_mb=1024))
    yield session
    session.stop()
