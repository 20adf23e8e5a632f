"""The DMP's batch half on an analytical engine: profiles as columnar tables (``tables``,
``rows``), segment rules compiled to SQL (``rules_sql``), memberships diffed by anti-join and
written back to the key-value store as a diff (``recompute``), exact overlap, and the load of
the key-value store's profiles (``load``). ``engine`` is the interface, ``duckdb_engine`` the
embedded engine (docs/dmp-data.md, "The analytics engine")."""
