"""The eventsourcing persistence module publishd names in ``PERSISTENCE_MODULE``.

Stock ``PostgresFactory`` in every respect (datastore, aggregate cache,
tracking recorders) except the recorders that insert events, which are ours
because the stock insert hangs on large saves (see ``recorder.py``).

The stock factory is imported through its module, not by name: eventsourcing
also accepts a bare module as the topic and then requires exactly one
``InfrastructureFactory`` subclass in the module's namespace.
"""

from __future__ import annotations

from eventsourcing import postgres

from infrastructure.postgres.recorder import PublishdApplicationRecorder, PublishdProcessRecorder


class PublishdPostgresFactory(postgres.PostgresFactory):
    application_recorder_class = PublishdApplicationRecorder
    process_recorder_class = PublishdProcessRecorder
