"""One async storage interface (``base``), several backends chosen by URL scheme (``registry``)."""

from cookiematch.storage.base import Durability, Store, Write
from cookiematch.storage.registry import connect_store, open_store

__all__ = ["Durability", "Store", "Write", "connect_store", "open_store"]
