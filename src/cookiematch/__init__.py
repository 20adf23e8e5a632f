"""cookiematch: cookie matching and ID sync for exchanges, buyers and DMPs."""

__version__ = "0.1.0"
