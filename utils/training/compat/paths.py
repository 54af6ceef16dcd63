"""The one map of what code written against an earlier layout of the library may still
ask for, and the one import hook that serves it.

`OLD` maps an old dotted path under `utils.training` to its home now. Three kinds of entry:

    "trainer": "engine.trainer"
        an old module path: importing it gives the very module object of the new path,
        so `mock.patch("utils.training.trainer.X")` patches what the library runs;
    "engine.trainer.resolve_device": "engine.device:resolve_device"
        an old name of a module ("module:attribute" of its home; the attribute may be
        dotted, "contracts:RunStatus.ALL"): looked up when first asked for;
    "data.*": "data.pipeline data.sources data.readers"
        every other name of a package that took over a flat module's path: the first of
        these modules that has it answers;
    "session.TrainingSession(log=)": "compat.keywords:training_session"
        an old keyword of a class: the class's __init__ is wrapped by that function of
        compat/keywords.py, which says what the keyword does now.

`install()` puts `OldPathFinder` first on `sys.meta_path`; utils/training/__init__.py calls
it, and nothing else imports this package. The finder answers the old module paths, and
loads each module that has old names or keywords with its real loader, then gives it a
module `__getattr__` for its old names and wraps the classes whose keywords changed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

PACKAGE = "utils.training"

OLD: dict[str, str] = {
    # -- old module paths ------------------------------------------------------------
    "callbacks": "engine.callbacks",
    "checkpoint": "engine.checkpoint",
    "distributed": "engine.distributed",
    "models": "engine.models",
    "optimizers": "engine.optimizers",
    "trainer": "engine.trainer",
    "timing": "engine.timing",
    "engine.flow": "engine.callbacks",
    "streaming": "data.stream",
    "sampler": "data.sampler",
    "token_file": "data.token_file",
    "tokenizer": "data.tokenizer",
    "db_file": "tracking.db_file",
    "run_log": "tracking.run_log",
    "metrics": "tracking.metrics",
    "loop_metrics": "compat.metrics_tracker",
    "tracking.loop_metrics": "compat.metrics_tracker",
    "wandb_logger": "tracking.wandb_logger",
    "tracking.hf": "hf",
    "seed_db": "tracking.seed_db",
    "tracking.run_facts": "engine.run_facts",
    "style": "viz.style",
    "report": "viz.report",
    "analysis": "viz.analysis",
    "seed_dashboard": "compat.dashboard",
    "viz.seed_dashboard": "compat.dashboard",
    "hpo_storage": "hpo.storage",
    "hpo_cli": "hpo.cli",
    "hpo_figures": "hpo.figures",
    "legacy_paths": "compat.paths",
    # the seed notebook's module paths
    "experiment_db": "compat.experiment_db",
    "live_plotting": "compat.live_plotting",
    "dashboard": "compat.dashboard",
    "training_config": "compat.training_config",
    "metrics_tracker": "compat.metrics_tracker",
    "seed_manager": "compat.seed_manager",
    # -- old names -------------------------------------------------------------------
    # the trainer's helpers, each in its own module now
    "engine.trainer.resolve_device": "engine.device:resolve_device",
    "engine.trainer.resolve_precision": "engine.device:resolve_precision",
    "engine.trainer.autocast_context": "engine.device:autocast_context",
    "engine.trainer.resolve_compile": "engine.device:resolve_compile",
    "engine.trainer.capture_rng": "engine.rng:capture_rng",
    "engine.trainer.restore_rng": "engine.rng:restore_rng",
    "engine.trainer.seed_everything": "engine.rng:seed_everything",
    "engine.trainer.build_scheduler": "engine.optimizers:build_scheduler",
    "engine.trainer.build_optimizer": "engine.optimizers:build_optimizer",
    "engine.trainer.adamw_kwargs": "engine.optimizers:adamw_kwargs",
    "engine.trainer.param_groups": "engine.optimizers:param_groups",
    "engine.trainer.CHECKPOINT_FORMAT": "engine.resume:CHECKPOINT_FORMAT",
    "engine.trainer.CHECKPOINT_KEYS": "engine.resume:CHECKPOINT_KEYS",
    "engine.trainer.ResumeError": "engine.resume:ResumeError",
    "engine.trainer.CheckpointCallback": "compat.callbacks:CheckpointCallback",
    # callbacks: the progress bar has its own module; CheckpointCallback is FlowCallback's
    "engine.callbacks.CheckpointCallback": "compat.callbacks:CheckpointCallback",
    "engine.callbacks.ProgressBarCallback": "engine.progress:ProgressBarCallback",
    # text and number formatting: utils/training/text.py
    "viz.style.human": "text:human",
    "viz.style.duration": "text:duration",
    "viz.style.time_unit": "text:time_unit",
    "viz.style.caveat": "text:caveat",
    "viz.style.with_caveat": "text:with_caveat",
    "viz.style.CHINCHILLA_TOKENS_PER_PARAM": "text:CHINCHILLA_TOKENS_PER_PARAM",
    "viz.style.chinchilla_share": "text:chinchilla_share",
    "viz.style.tidy_table": "text:tidy_table",
    "viz.style.show_table": "text:show_table",
    "viz.style.table_text": "text:table_text",
    # the session's neighbours
    "session.TrackingOptions": "session:ReportingOptions",
    "session.estimate_training_memory_gb": "engine.memory:estimate_training_memory_gb",
    "session.memory_problem": "engine.memory:memory_problem",
    "session.CHINCHILLA_TOKENS_PER_PARAM": "text:CHINCHILLA_TOKENS_PER_PARAM",
    "session.context_claim": "summary:context_claim",
    "session.format_summary": "summary:format_summary",
    "session.summary_card": "summary:summary_card",
    # the seed import moved out of seed_db (it reads a copy of the source, checks each row)
    "tracking.seed_db.import_seed_db": "tracking.seed_import:import_seed_db",
    "tracking.seed_db.read_seed_db": "tracking.seed_import:read_seed_db",
    "tracking.seed_db.ImportReport": "tracking.seed_import:ImportReport",
    # the run statuses
    "tracking.db_schema.STATUSES": "contracts:RunStatus.ALL",
    "tracking.experiment_db.STATUSES": "contracts:RunStatus.ALL",
    "tracking.experiment_db.ExperimentDBSink": "tracking.db_sink:ExperimentDBSink",
    # chunk mode is prepare_data(mode="chunk")
    "data.stream.prepare_chunks": "data.pipeline:prepare_chunks",
    # packages that took over a flat module's path answer every name of these modules
    "data.*": "data.pipeline data.sources data.readers",
    "hpo.*": "hpo.study",
    "hpo.storage.*": "hpo.workers",
    # the seed's plot modules answer every other name of the core modules they extend
    "compat.dashboard.*": "viz.dashboard",
    "compat.live_plotting.*": "viz.live_plotting",
    # the source names data/pipeline.py answered for the flat data.py
    "data.pipeline.DOC_SPLITS": "data.readers:DOC_SPLITS",
    "data.pipeline.TEXT_SUFFIXES": "data.readers:TEXT_SUFFIXES",
    "data.pipeline.TEXT_COLUMN_GUESSES": "data.readers:TEXT_COLUMN_GUESSES",
    "data.pipeline.DRIVE_ROOT": "data.sources:DRIVE_ROOT",
    "data.pipeline.SOURCES": "data.sources:SOURCES",
    "data.pipeline.TextCorpus": "data.sources:TextCorpus",
    "data.pipeline.builtin_corpus": "data.sources:builtin_corpus",
    "data.pipeline.data_files": "data.sources:data_files",
    "data.pipeline.hf_offline_message": "data.sources:hf_offline_message",
    "data.pipeline.hub_reachable": "data.sources:hub_reachable",
    "data.pipeline.list_data_files": "data.sources:list_data_files",
    "data.pipeline.load_builtin": "data.sources:load_builtin",
    "data.pipeline.load_drive": "data.sources:load_drive",
    "data.pipeline.load_hf": "data.sources:load_hf",
    "data.pipeline.load_local": "data.sources:load_local",
    "data.pipeline.load_source": "data.sources:load_source",
    "data.pipeline.load_synthetic": "data.sources:load_synthetic",
    "data.pipeline.load_upload": "data.sources:load_upload",
    "data.pipeline.spool_hf_to_text": "data.sources:spool_hf_to_text",
    "data.pipeline.source_options": "data.sources:source_options",
    # config_rules.py and presets.py were split out of config.py
    "config.CHOICES": "config_rules:CHOICES",
    "config.COMPILE_MODES": "config_rules:COMPILE_MODES",
    "config.DATA_SOURCES": "config_rules:DATA_SOURCES",
    "config.KNOWN_ALIASES": "config_rules:KNOWN_ALIASES",
    "config.MODEL_FAMILIES": "config_rules:MODEL_FAMILIES",
    "config.OPTIMIZERS": "config_rules:OPTIMIZERS",
    "config.PATH_NAME_RULE": "config_rules:PATH_NAME_RULE",
    "config.PRECISIONS": "config_rules:PRECISIONS",
    "config.RANGES": "config_rules:RANGES",
    "config.SCHEDULES": "config_rules:SCHEDULES",
    "config.path_name_problem": "config_rules:path_name_problem",
    "config.type_matches": "config_rules:type_matches",
    "config.PRESET_SIZE": "presets:PRESET_SIZE",
    # names their modules re-export for these old paths (the re-export lines may go)
    "viz.dashboard.WIDE_RANGE": "viz.panels:WIDE_RANGE",
    "tracking.run_log.GB_TO_GIB": "tracking.readers.llm_foundry:GB_TO_GIB",
    "tracking.run_log.nanogpt_lr": "tracking.readers.llm_foundry:nanogpt_lr",
    "tracking.run_log.FORMAT": "tracking.run_log_format:FORMAT",
    "tracking.run_log.VERSION": "tracking.run_log_format:VERSION",
    "tracking.run_log.RunLogError": "tracking.run_log_format:RunLogError",
    "tracking.experiment_db.SEED_TABLES": "tracking.db_file:SEED_TABLES",
    "tracking.experiment_db.SQLITE_MAGIC": "tracking.db_file:SQLITE_MAGIC",
    "tracking.experiment_db.MIGRATIONS": "tracking.db_schema:MIGRATIONS",
    "viz.report.MA_WINDOW": "viz.series:MA_WINDOW",
    "viz.report.ma_window": "viz.series:ma_window",
    "viz.report.moving_average": "viz.series:moving_average",
    "viz.analysis.memory_panel": "viz.panels:memory_panel",
    "viz.analysis.perplexity_ticks": "viz.panels:perplexity_ticks",
    "tracking.run_log.load_run": "tracking.readers:load_run",
    "tracking.run_log.load_runs": "tracking.readers:load_runs",
    "tracking.run_log.run_log_specs": "tracking.readers:run_log_specs",
    "tracking.run_log.RunRecord": "tracking.run_record:RunRecord",
    "tracking.experiment_db.DatabaseFileError": "tracking.db_file:DatabaseFileError",
    "tracking.experiment_db.check_database_file": "tracking.db_file:check_database_file",
    "tracking.experiment_db.RUN_COLUMNS": "tracking.db_schema:RUN_COLUMNS",
    "tracking.experiment_db.SCHEMA_VERSION": "tracking.db_schema:SCHEMA_VERSION",
    "tracking.experiment_db.SORT_COLUMNS": "tracking.db_schema:SORT_COLUMNS",
    "tracking.experiment_db.SUMMARY_COLUMNS": "tracking.db_schema:SUMMARY_COLUMNS",
    "tracking.experiment_db.TRIAL_STATES": "tracking.db_schema:TRIAL_STATES",
    "tracking.experiment_db.Transaction": "tracking.db_schema:Transaction",
    "tracking.experiment_db.connect": "tracking.db_schema:connect",
    # -- old keywords ----------------------------------------------------------------
    "session.TrainingSession(log=)": "compat.keywords:training_session",
    "tracking.sinks.ReportingOptions(wandb_init_timeout_s=)": "compat.keywords:reporting_options",
}


def _split() -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """OLD as (old module -> module), (module -> {old name: home}), (module -> {class: wrapper})."""
    modules: dict[str, str] = {}
    names: dict[str, dict[str, str]] = {}
    keywords: dict[str, dict[str, str]] = {}
    for old, home in OLD.items():
        if old.endswith(".*"):
            names.setdefault(old[:-2], {})["*"] = home
        elif old.endswith("=)"):
            owner, _, cls = old.partition("(")[0].rpartition(".")
            keywords.setdefault(owner, {})[cls] = home
        elif ":" in home:
            owner, _, name = old.rpartition(".")
            names.setdefault(owner, {})[name] = home
        else:
            modules[old] = home
    return modules, names, keywords


MODULES, NAMES, KEYWORDS = _split()
OLD_MODULE_PATHS = MODULES  # what tests and readers of the map iterate over


def resolve(home: str) -> Any:
    """The object at "module:attribute" (both relative to utils.training; the attribute
    may be dotted)."""
    module, _, attribute = home.partition(":")
    value: Any = importlib.import_module(f"{PACKAGE}.{module}")
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def _serve_old_names(module: ModuleType, names: dict[str, str]) -> None:
    own: Callable[[str], Any] | None = module.__dict__.get("__getattr__")

    def __getattr__(name: str) -> Any:
        if name in names and name != "*":
            return resolve(names[name])
        if not name.startswith("__"):
            for home in names.get("*", "").split():
                target = importlib.import_module(f"{PACKAGE}.{home}")
                if hasattr(target, name):
                    return getattr(target, name)
        if own is not None:
            return own(name)
        raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]


def _serve_old_keywords(module: ModuleType, wrappers: dict[str, str]) -> None:
    for cls_name, wrapper in wrappers.items():
        cls = getattr(module, cls_name)
        cls.__init__ = resolve(wrapper)(cls.__init__)


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module already at its new path (imported if needed)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when its new path was imported; running it again would make a
        second copy of every class (isinstance checks would then fail)."""


class _OldNamesLoader(importlib.abc.Loader):
    """The module's own loader, then its old names and keywords."""

    def __init__(self, loader: importlib.abc.Loader, rel: str) -> None:
        self.loader, self.rel = loader, rel

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        if self.rel in NAMES:
            _serve_old_names(module, NAMES[self.rel])
        if self.rel in KEYWORDS:
            _serve_old_keywords(module, KEYWORDS[self.rel])

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package, ...
        return getattr(self.loader, name)


class OldPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PACKAGE + "."):
            return None
        rel = fullname[len(PACKAGE) + 1:]
        if rel in MODULES:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(f"{PACKAGE}.{MODULES[rel]}"))
        if rel in NAMES or rel in KEYWORDS:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _OldNamesLoader(spec.loader, rel)
            return spec
        return None


def install() -> None:
    """Called once, by utils/training/__init__.py (before any of its modules is
    imported); a second call adds nothing."""
    if not any(isinstance(finder, OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, OldPathFinder())
