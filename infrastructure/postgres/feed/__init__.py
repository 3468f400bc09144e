"""The event streams' source on PostgreSQL: one feed of stored events per process.

``event_feed`` listens and reads (live, and ``replay`` in pages), ``decoder``
and ``wire`` turn rows into the JSON every stream sends, ``subscription``
fans events out, and ``queries`` holds the SQL.
"""
