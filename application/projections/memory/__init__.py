"""The projections in memory: the same pure logic as on PostgreSQL, with dicts for tables.

``writers`` holds the tables and the adapters of the projection ports,
``projector`` feeds batches of stored events through every projection into
them, and ``views`` answers the read port from them, kept up to date from an
in-memory event store: applications run, and are tested, without a database.
"""
