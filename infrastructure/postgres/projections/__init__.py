"""The projections on PostgreSQL: their tables, writers, runner, rebuild, verify and queries.

``registry`` says which projection (pure logic, ``application.projections``)
uses which writer and tables; ``runner`` keeps them live (``run_projections``),
``rebuild`` and ``verify`` replay them, and ``views`` is the read port over
their tables.
"""
