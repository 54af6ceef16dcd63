"""tracking/sinks.py: ReportingOptions (the W&B settings, checked when made) and sinks_for,
the one factory of a run's sinks (the session, the HF callback and the seed tracker)."""

from __future__ import annotations

import pytest

from utils.training.config import TrainingConfig
from utils.training.config_rules import ConfigError
from utils.training.tracking import sinks as sinks_module
from utils.training.tracking.db_sink import ExperimentDBSink
from utils.training.tracking.experiment_db import ExperimentDB
from utils.training.tracking.run_log import RunLogWriter
from utils.training.tracking.sinks import SINK_BUILDERS, ReportingOptions, sinks_for
from utils.training.tracking.wandb_logger import WandbRunSink, WandbSink


@pytest.fixture
def db(tmp_path):
    with ExperimentDB(tmp_path / "experiments.db") as d:
        yield d


def test_database_and_run_log_when_given_and_no_wandb_by_default(tmp_path, db):
    sinks = sinks_for(None, run_name="r", config={"lr": 1e-3}, db=db, run_log_path=tmp_path / "r" / "run.json")
    assert [type(s) for s in sinks] == [ExperimentDBSink, RunLogWriter]
    assert sinks[0].run_name == "r" and sinks[1].doc["name"] == "r" and sinks[1].doc["config"] == {"lr": 1e-3}
    assert sinks_for(ReportingOptions(), run_name="r") == []


def test_wandb_sink_takes_every_setting_from_the_options(tmp_path):
    options = ReportingOptions(wandb_project="p", wandb_entity="e", wandb_mode="offline", wandb_tags=("a",),
                               wandb_api_key="k")
    (w,) = sinks_for(options, run_name="r", config={"x": 1}, run_dir=tmp_path, wandb_timeout_s=7.0)
    assert isinstance(w, WandbSink)
    assert (w.project, w.entity, w.mode, w.tags, w.init_timeout_s, w.run_name, w.run_dir, w.config) == (
        "p", "e", "offline", ("a",), 7.0, "r", str(tmp_path), {"x": 1})
    assert sinks_for(ReportingOptions(wandb_project="p", wandb_mode="disabled"), run_name="r") == []
    assert [type(s) for s in sinks_for(ReportingOptions(wandb_attach=True), run_name="")] == [WandbRunSink]


@pytest.mark.parametrize("field, value", [("wandb_mode", "onlin"), ("wandb_tags", "a,b"),
                                          ("trackio_project", 3), ("wandb_project", None)])
def test_bad_wandb_settings_are_refused_when_made(field, value):
    with pytest.raises(ConfigError, match=field) as e:
        ReportingOptions(**{field: value})
    assert e.value.fields == [field]


def test_a_setting_changed_after_construction_is_refused_by_the_factory():
    options = ReportingOptions()
    options.wandb_mode = "sometimes"
    with pytest.raises(ConfigError, match="wandb_mode"):
        sinks_for(options, run_name="r")


def test_one_more_sink_is_one_registry_entry(monkeypatch):
    class Recorder:
        def __init__(self, name):
            self.name = name

    monkeypatch.setitem(SINK_BUILDERS, "recorder", lambda options, target: Recorder(target.run_name))
    (s,) = sinks_for(None, run_name="r")
    assert isinstance(s, Recorder) and s.name == "r"


def test_the_session_builds_its_sinks_with_the_factory(tmp_path, monkeypatch):
    from utils.training.session import TrainingSession
    from utils.training.tracking.metrics import MetricsTracker

    calls = []
    real = sinks_module.sinks_for

    def spy(options, **kwargs):
        calls.append((options, kwargs))
        return real(options, **kwargs)

    monkeypatch.setattr("utils.training.session.sinks_for", spy)
    options = ReportingOptions(wandb_project="p", wandb_mode="offline", progress_bar=False)
    config = TrainingConfig.preset("smoke", run_name="s1", wandb_timeout_s=4.0)
    s = TrainingSession(config, tmp_path, tracking=options)
    tracker = next(cb for cb in s.callbacks() if isinstance(cb, MetricsTracker))
    assert [type(x) for x in tracker.sinks] == [ExperimentDBSink, RunLogWriter, WandbSink]
    assert tracker.sinks[2].init_timeout_s == 4.0
    ((given, kwargs),) = calls
    assert given is options and kwargs["run_name"] == "s1" and kwargs["db"] is s.db
    s.close()


def test_a_bad_wandb_mode_fails_before_any_data_is_prepared(tmp_path, monkeypatch):
    from utils.training.session import TrainingSession

    def prepare_data(*args, **kwargs):
        raise AssertionError("prepare_data was called")

    monkeypatch.setattr("utils.training.data.pipeline.prepare_data", prepare_data)
    options = ReportingOptions(progress_bar=False)
    s = TrainingSession(TrainingConfig.preset("smoke"), tmp_path, tracking=options)
    options.wandb_mode = "bogus"  # set after the session was made
    with pytest.raises(ConfigError, match="wandb_mode"):
        s.train()
    with pytest.raises(ConfigError, match="wandb_mode"):
        TrainingSession(TrainingConfig.preset("smoke"), tmp_path, tracking=options)
    s.close()
