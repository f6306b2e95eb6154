"""The venue's log: where journaled commands are kept.

``engine/journal.py`` holds the ``Journal`` interface and the file journal (the one-machine
default); this package holds the replicated log on a NATS JetStream stream (``jetstream``) and
the local JetStream cluster it runs against in tests and ``crowdex cluster`` (``natscluster``).
"""
