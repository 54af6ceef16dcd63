"""drive.mount(mount_point): links MOUNT_POINT/MyDrive to $FAKE_COLAB_DRIVE."""

import os
from pathlib import Path


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    target = Path(os.environ["FAKE_COLAB_DRIVE"])
    target.mkdir(parents=True, exist_ok=True)
    link = Path(mountpoint) / "MyDrive"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    print(f"Mounted at {mountpoint}")
