"""Hyperparameter search with Optuna: the search space, the study and its pruning
callback, where studies are stored (exactly N trials across workers), the `hpo` command
and the study's figures."""

from utils.training.legacy_paths import forward_attributes

# `from utils.training.hpo import SearchSpace`: the names of the former hpo.py
__getattr__ = forward_attributes(__name__, "study")
