"""The exchange's HTTP edge: the match tag and opt-out (``routes.py``), ``/ad`` and the bid
transport (``ad.py``)."""
