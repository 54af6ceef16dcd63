"""Where a run's record goes: the SQLite experiment database, the JSON run log, metrics
and their sinks (W&B among them), and adapters for others' trainers and databases.
Importing this package imports no torch."""
