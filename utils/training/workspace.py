"""The workspace: where a run's files live, locally and (in Colab) on Google Drive.

Outside Colab everything is under one folder. In Colab, the things that must be fast
or that SQLite must own live on the VM's local disk (the experiment database, the
primary checkpoint files) and the rest lives on Drive, which survives the runtime:

    root/                 (Drive in Colab)   configs/ datasets/ results/ runs/NAME/{run.json,viz,model,...}
    local/                (VM disk in Colab) experiments.db, runs/NAME/checkpoints/
    root/experiments.db                      the database's backup copy (SQLite backup API)
    root/runs/NAME/checkpoints/              the checkpoints' mirror (copy + hash check)

When the runtime dies the local disk is gone; the next run restores the database
from its backup and resumes from the mirrored checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def _path_name(field: str, name: str) -> str:
    """`name` if it may name a folder (config.path_name_problem, the one rule), else ConfigError."""
    from utils.training.config_rules import ConfigError, path_name_problem

    problem = path_name_problem(field, name)
    if problem:
        raise ConfigError([problem])
    return name


@dataclass(frozen=True)
class Workspace:
    root: Path  # durable folder (Drive in Colab)
    local: Path | None = None  # fast local folder; None = same as root

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        if self.local is not None:
            local = Path(self.local).expanduser().resolve()
            object.__setattr__(self, "local", None if local == self.root else local)

    # --- folders ---------------------------------------------------------------------
    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def text_dir(self) -> Path:
        """Corpora written out as text for chunk mode, one document per line (HF spools,
        in-memory corpora): datasets/text/KEY.txt."""
        return self.datasets_dir / "text"

    @property
    def tokenizers_dir(self) -> Path:
        """Trained tokenizers, keyed by their training text's hash and vocabulary size."""
        return self.datasets_dir / "tokenizers"

    def token_file_path(self, corpus_hash: str, tokenizer_id: str, split: str) -> Path:
        """A split's packed token file (stem of .bin + .json), keyed by the split's text
        hash and the tokenizer: datasets/HASH16-TOKENIZER/SPLIT."""
        return self.datasets_dir / f"{corpus_hash[:16]}-{tokenizer_id}" / split

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    # --- hyperparameter search (hpo) ---------------------------------------------------
    @property
    def hpo_dir(self) -> Path:
        return self.results_dir / "hpo"

    def hpo_journal_path(self, study_name: str) -> Path:
        """The study's default storage: a journal file (hpo/storage.py)."""
        return self.hpo_dir / f"{_path_name('study_name', study_name)}.journal"

    def hpo_study_dir(self, study_name: str) -> Path:
        """The study's results: best.json, trials.csv, figures (hpo/figures.py)."""
        return self.hpo_dir / _path_name("study_name", study_name)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_name: str) -> Path:
        return self.runs_dir / _path_name("run_name", run_name)

    # --- database --------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return (self.local or self.root) / "experiments.db"

    @property
    def db_mirror_path(self) -> Path | None:
        return self.root / "experiments.db" if self.local else None

    # --- checkpoints -----------------------------------------------------------------
    def checkpoint_run_dir(self, run_name: str) -> Path:
        """The run folder that holds the primary `checkpoints/` (local disk in Colab)."""
        return (self.local or self.root) / "runs" / _path_name("run_name", run_name)

    def checkpoint_mirror_dir(self, run_name: str) -> Path | None:
        return self.run_dir(run_name) / "checkpoints" if self.local else None

    def checkpoint_dir(self, run_name: str) -> Path:
        """The primary `checkpoints/` folder of a run (local disk in Colab)."""
        return self.checkpoint_run_dir(run_name) / "checkpoints"

    # --- a run's files (all in its durable run_dir) ------------------------------------
    def run_config_path(self, run_name: str) -> Path:
        """The config the run trained with (TrainingConfig JSON)."""
        return self.run_dir(run_name) / "config.json"

    def dashboard_path(self, run_name: str) -> Path:
        return self.run_dir(run_name) / "dashboard.png"

    def export_dir(self, run_name: str) -> Path:
        """save_pretrained model and tokenizer (AutoModelForCausalLM loads it)."""
        return self.run_dir(run_name) / "model"

    def live_plot_path(self, run_name: str) -> Path:
        return self.run_dir(run_name) / "live.png"

    @property
    def trackio_dir(self) -> Path:
        """Trackio's local storage (TRACKIO_DIR) for this workspace's runs (tracking.trackio_sink)."""
        return self.root / "trackio"

    def run_log_path(self, run_name: str) -> Path:
        """The JSON run log (tracking.run_log)."""
        return self.run_dir(run_name) / "run.json"

    def create(self) -> Workspace:
        for d in (self.configs_dir, self.datasets_dir, self.results_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.local:
            (self.local / "runs").mkdir(parents=True, exist_ok=True)
        return self

    def describe(self) -> str:
        if self.local:
            return f"workspace {self.root} (durable) with local disk {self.local} for the database and checkpoints"
        return f"workspace {self.root}"


def open_notebook_workspace(
    workspace_dir: str | Path,
    *,
    use_drive: bool = True,
    drive_folder: str = "slm-workspace",
    mount_point: str | Path = "/content/drive",
    local_dir: str | Path = "/content/local-workspace",
    log=print,
) -> Workspace:
    """The notebook's workspace. In Colab with `use_drive`: Drive is mounted and holds
    the durable folder, `local_dir` the database and checkpoints. If the mount fails
    (no consent, no Drive), or outside Colab, everything is under `workspace_dir`."""
    from utils.training.runtime import in_colab

    if use_drive and in_colab():
        try:
            from google.colab import drive

            drive.mount(str(mount_point))
        except (ImportError, OSError, ValueError, RuntimeError) as e:
            log(f"Drive not mounted ({type(e).__name__}: {e}); using local {workspace_dir} (lost with the runtime)")
        else:
            root = Path(mount_point) / "MyDrive" / drive_folder
            return Workspace(root, local=Path(local_dir)).create()
    return Workspace(Path(workspace_dir)).create()
