"""Exports ("cookie pools"): batches of IDs delivered to destinations.

``model`` (destinations, batches), ``signing`` (HMAC-SHA256 headers), ``retry`` (backoff),
``sinks`` (HTTP, exchange user list, files), ``state`` (what was sent, the last report),
``report`` (the delivery report). Which segment members a batch carries is decided above this
package, in ``dmp/segment_exports.py``; HTTP goes through the ``Transport`` of
``dmp/transport.py``.
"""

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
from cookiematch.dmp.exports.sinks import (
    ExchangeUserListSink,
    FileSink,
    HttpSink,
    Sink,
    make_sink,
)
from cookiematch.dmp.transport import HttpAnswer, PullTransport, Transport

__all__ = [
    "Batch",
    "Delivery",
    "DeliveryReport",
    "Destination",
    "ExchangeUserListDestination",
    "ExchangeUserListSink",
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
    "make_sink",
]
