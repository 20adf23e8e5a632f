"""The DMP's HTTP edge: container tag, sync, callbacks and pixels (``routes.py``), the admin
API (``admin.py``), partner batches (``ingest.py``) and segments (``segments.py``)."""
