"""Everything that exists only so that code written against an earlier version of the
library keeps working, and nothing else: old module paths, old names and keywords, and the
seed notebook's API (transformer-builder-colab-templates) as subclasses and adapters of the
core classes.

    paths.py            the one map of old module paths, old names and old keywords, and the
                        one import hook that serves them (installed by utils/training/__init__.py)
    keywords.py         how an old keyword of a class is accepted
    callbacks.py        CheckpointCallback (cadence belongs to FlowCallback)
    training_config.py  the seed's TrainingConfig (validate(), its defaults and messages)
    experiment_db.py    the seed's ExperimentDB (its shapes and errors)
    metrics_tracker.py  the seed's MetricsTracker (log_scalar, log_epoch, nvidia-smi)
    live_plotting.py    the seed's LivePlotter.update(epoch, ...) and CompactLivePlotter
    dashboard.py        the seed's TrainingDashboard.plot(df) and its layout
    seed_manager.py     the seed's set_random_seed

The library itself never imports this package (tests/test_layering.py checks it).
docs/seed_api.md lists the seed's module paths served here and the seed behaviours
deliberately not copied.
"""
