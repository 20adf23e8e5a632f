"""The buyer's HTTP edge: redirect handler, push, match-tag decision and ``/bid``
(``routes.py``), its opt-out page and the exchange's opt-out notices (``optout.py``), its
admin API (``admin.py``) and metrics (``metrics.py``)."""
