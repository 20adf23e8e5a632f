"""The conformance kit: ``cookiematch conform buyer|exchange``.

It plays one side of the Cookie Matching protocol (seeds/003) against another party's real
endpoints and reports case by case. A case is a small value (``case.Case``: name, the seed's
words it checks, the request, the checks); builders make them (``buyer``, ``bids``,
``exchange``), one runner sends them (``runner``), one module renders the results
(``report``: terminal table, JUnit XML, self-contained HTML). An I/O tool over ``protocol/``
and an HTTP client: it imports no role of cookiematch.
"""
