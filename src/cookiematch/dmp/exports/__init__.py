"""Exports ("cookie pools"): a segment sent to a destination, translated to its IDs.

``model`` (destinations, batches), ``signing`` (HMAC-SHA256 headers), ``transport`` (HTTP),
``retry`` (backoff), ``sinks`` (HTTP, exchange user list, files), ``state`` (what was sent),
``exporter`` (plan, send, record), ``report`` (the delivery report).
"""

from cookiematch.dmp.exports.exporter import Exporter, last_report
from cookiematch.dmp.exports.model import (
    Batch,
    Delivery,
    Destination,
    ExchangeUserListDestination,
    FileDestination,
    FileFormat,
    HttpDestination,
    Mode,
)
from cookiematch.dmp.exports.report import DeliveryReport
from cookiematch.dmp.exports.sinks import ExchangeUserListSink, FileSink, HttpSink, Sink
from cookiematch.dmp.exports.transport import HttpAnswer, PullTransport, Transport

__all__ = [
    "Batch",
    "Delivery",
    "DeliveryReport",
    "Destination",
    "ExchangeUserListDestination",
    "ExchangeUserListSink",
    "Exporter",
    "FileDestination",
    "FileFormat",
    "FileSink",
    "HttpAnswer",
    "HttpDestination",
    "HttpSink",
    "Mode",
    "PullTransport",
    "Sink",
    "Transport",
    "last_report",
    "make_sink",
]


def make_sink(destination: Destination, transport: Transport) -> Sink:
    """The sink that delivers to ``destination``."""
    if isinstance(destination, HttpDestination):
        return HttpSink(destination, transport)
    if isinstance(destination, ExchangeUserListDestination):
        return ExchangeUserListSink(destination, transport)
    return FileSink(destination)
