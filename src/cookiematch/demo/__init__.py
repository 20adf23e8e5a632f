"""``cookiematch demo``: every role started locally on the embedded store, simulated browsers
walking the reference documents' stories (``story.py``; the DMP's in ``dmp_story.py``)."""
