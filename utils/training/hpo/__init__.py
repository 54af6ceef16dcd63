"""Hyperparameter search with Optuna.

    space.py    SearchSpace: the searched TrainingConfig fields, parsed and checked once
    study.py    run_study / create_study: the study and its objective (one run per trial)
    pruning.py  OptunaPruningCallback: report each evaluation, stop a pruned run
    storage.py  open_storage / spec_kind / claim_lock: where a study lives, and its lock
    workers.py  optimize_exactly: exactly N trials across workers, dead workers' trials redone
    job.py      StudyJob: one worker's checked arguments, handed to worker processes as JSON
    cli.py      `python -m utils.training hpo`
    figures.py  write_study_results: best.json, trials.csv and the study's figures
    plots.py    the study's four figures, drawn in the project's style
"""
