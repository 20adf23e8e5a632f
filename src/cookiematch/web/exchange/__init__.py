"""The exchange's HTTP edge: the match tag and opt-out (``routes.py``), ``/ad``
(``ad.py``), the admin API (``admin.py``) and the counters of both (``metrics.py``)."""
