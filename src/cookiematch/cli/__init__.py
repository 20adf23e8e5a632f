"""The ``cookiematch`` command line."""
