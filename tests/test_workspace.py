"""Workspace layout: one folder locally; Drive + local disk in Colab."""

from utils.training.workspace import Workspace


def test_single_folder_layout(tmp_path):
    ws = Workspace(tmp_path / "ws").create()
    assert ws.local is None
    assert ws.db_path == tmp_path / "ws" / "experiments.db"
    assert ws.db_mirror_path is None
    assert ws.checkpoint_run_dir("a") == ws.run_dir("a") == tmp_path / "ws" / "runs" / "a"
    assert ws.checkpoint_mirror_dir("a") is None
    for d in (ws.configs_dir, ws.datasets_dir, ws.results_dir, ws.runs_dir):
        assert d.is_dir()


def test_colab_layout_keeps_database_and_checkpoints_local(tmp_path):
    ws = Workspace(tmp_path / "drive", local=tmp_path / "vm").create()
    assert ws.db_path == tmp_path / "vm" / "experiments.db"
    assert ws.db_mirror_path == tmp_path / "drive" / "experiments.db"
    assert ws.checkpoint_run_dir("a") == tmp_path / "vm" / "runs" / "a"
    assert ws.checkpoint_mirror_dir("a") == tmp_path / "drive" / "runs" / "a" / "checkpoints"
    assert ws.run_dir("a") == tmp_path / "drive" / "runs" / "a"


def test_local_equal_to_root_means_single_folder(tmp_path):
    assert Workspace(tmp_path, local=tmp_path).local is None
