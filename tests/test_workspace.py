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


def test_notebook_workspace_outside_colab_is_one_folder(tmp_path):
    from utils.training.workspace import open_notebook_workspace

    ws = open_notebook_workspace(tmp_path / "ws", use_drive=True, local_dir=tmp_path / "vm")
    assert ws.root == (tmp_path / "ws").resolve() and ws.local is None


def test_notebook_workspace_in_colab_mounts_drive(tmp_path, monkeypatch):
    import sys
    import types

    from utils.training.workspace import open_notebook_workspace

    mounted = []
    google, colab, drive = (types.ModuleType(n) for n in ("google", "google.colab", "google.colab.drive"))
    drive.mount = lambda mount_point: (mounted.append(mount_point), (tmp_path / "drive" / "MyDrive").mkdir(parents=True))
    google.colab, colab.drive = colab, drive
    for name, mod in (("google", google), ("google.colab", colab), ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, mod)
    ws = open_notebook_workspace(tmp_path / "ws", mount_point=tmp_path / "drive", local_dir=tmp_path / "vm",
                                 drive_folder="slm")
    assert mounted == [str(tmp_path / "drive")]
    assert ws.root == (tmp_path / "drive" / "MyDrive" / "slm").resolve()
    assert ws.db_path == (tmp_path / "vm" / "experiments.db").resolve()


def test_notebook_workspace_falls_back_when_mount_fails(tmp_path, monkeypatch):
    import sys
    import types

    from utils.training.workspace import open_notebook_workspace

    google, colab, drive = (types.ModuleType(n) for n in ("google", "google.colab", "google.colab.drive"))

    def refuse(mount_point):
        raise ValueError("mount failed: no consent")

    drive.mount = refuse
    google.colab, colab.drive = colab, drive
    for name, mod in (("google", google), ("google.colab", colab), ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, mod)
    lines = []
    ws = open_notebook_workspace(tmp_path / "ws", mount_point=tmp_path / "d", local_dir=tmp_path / "vm", log=lines.append)
    assert ws.local is None and ws.root == (tmp_path / "ws").resolve()
    assert "Drive not mounted" in lines[0] and "no consent" in lines[0]


def test_a_runs_files_are_named_by_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "drive", local=tmp_path / "vm")
    run = tmp_path / "drive" / "runs" / "a"
    assert ws.run_log_path("a") == run / "run.json" and ws.run_config_path("a") == run / "config.json"
    assert ws.export_dir("a") == run / "model" and ws.dashboard_path("a") == run / "dashboard.png"
    assert ws.live_plot_path("a") == run / "live.png"
    assert ws.checkpoint_dir("a") == tmp_path / "vm" / "runs" / "a" / "checkpoints"
