"""Old keywords of the library's classes, accepted by wrapping the class's __init__
(compat/paths.py's map names the wrapper of each class). The classes themselves no longer
know these keywords.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

_NOT_GIVEN: Any = object()


def training_session(init: Callable[..., None]) -> Callable[..., None]:
    """TrainingSession(log=...): accepted and ignored (nothing was ever logged through it).
    Options carrying an old `wandb_init_timeout_s` (see reporting_options) set the run
    config's `wandb_timeout_s`, the one bound of every wait on W&B."""

    @functools.wraps(init)
    def __init__(self, config: Any, *args: Any, log: Any = _NOT_GIVEN, **kwargs: Any) -> None:
        if log is not _NOT_GIVEN:
            warnings.warn("TrainingSession(log=...) is ignored (nothing was ever logged through it); drop the "
                          "argument", DeprecationWarning, stacklevel=2)
        timeout = vars(kwargs.get("tracking") or object).get("wandb_init_timeout_s")
        if timeout is not None:
            config = config.replace(wandb_timeout_s=float(timeout))
        init(self, config, *args, **kwargs)

    return __init__


def reporting_options(init: Callable[..., None]) -> Callable[..., None]:
    """ReportingOptions(wandb_init_timeout_s=...): the W&B start timeout is the config's
    `wandb_timeout_s` now. The value is kept on the options (read back as before) and
    the TrainingSession given these options puts it in its config."""

    @functools.wraps(init)
    def __init__(self, *args: Any, wandb_init_timeout_s: float | None = None, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if wandb_init_timeout_s is not None:
            warnings.warn("ReportingOptions(wandb_init_timeout_s=...) is TrainingConfig.wandb_timeout_s now; set it "
                          "in the config", DeprecationWarning, stacklevel=2)
            self.__dict__["wandb_init_timeout_s"] = wandb_init_timeout_s

    return __init__
