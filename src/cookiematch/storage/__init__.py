"""One async storage interface, several backends chosen by URL scheme."""

from cookiematch.storage.base import Durability, Store, Write, connect_store, open_store

__all__ = ["Durability", "Store", "Write", "connect_store", "open_store"]
