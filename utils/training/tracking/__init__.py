"""Where a run's record goes (docs/storage.md says which copy is the source of truth):

- experiment_db.py   ExperimentDB: the SQLite store (runs, artifacts, trials, backup), owning:
- db_schema.py       its tables, migrations and connection discipline (WAL, BEGIN IMMEDIATE)
- db_metrics.py      MetricStore, its metric points (checked, buffered, written, read)
- db_sink.py         ExperimentDBSink, the MetricsSink writing to it
- db_file.py         what is at a database path, checked before a byte is written
- run_log.py         RunLogWriter, the MetricsSink writing runs/NAME/run.json
- run_log_format.py  that file's format; run_record.py RunRecord, one run in our names
- readers/           one adapter per format a run is read from (load_run)
- metrics.py         MetricsTracker (derived metrics, fan-out to sinks), peak FLOPS
- sinks.py           ReportingOptions (the W&B settings) and sinks_for, the one sink factory
- wandb_logger.py    WandbSink, WandbRunSink; seed_db.py the seed's database
Importing this package imports no torch."""
