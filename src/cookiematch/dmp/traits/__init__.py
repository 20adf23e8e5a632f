"""Traits: a profile's ingested attributes and events, each with a TTL per trait.

``schema`` (declared traits and their defaults: ``TraitCatalog``), ``fields`` (the ``:t`` field
map of a browser, and decoding it), ``writes`` (``ProfileUpdate``, ``TraitStore``: writing and
trimming), ``reader`` (``ProfileReader``: ``ProfileSnapshot`` values for segments).
"""
