"""Stop signals, handled as one: Ctrl-C (SIGINT) and SIGTERM, which is how Colab stops a
runtime and torchrun stops its workers.

Python turns SIGINT into KeyboardInterrupt, which the trainer answers with a checkpoint of
the current step and the status `interrupted`. SIGTERM's default action ends the process
on the spot: no checkpoint of the step, the run left `running`. While a Trainer trains (and
for the whole of `python -m utils.training`), SIGTERM raises `Terminated`, a
KeyboardInterrupt, so both signals take that one path; the command line then exits
128 + the signal's number (130, 143) with one line, as a process ended by it would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143

# The stop signals received by this process (their numbers, in order): an error raised
# after one of them, for example by an import it cut short, is its consequence.
received: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""


def _on_sigterm(signum, frame) -> None:
    received.append(signum)
    raise Terminated("SIGTERM")


def _on_sigint(signum, frame) -> None:
    received.append(signum)
    raise KeyboardInterrupt


def install_stop_handlers() -> None:
    """For a command's whole life (call it first, before heavy imports): both signals raise
    in the main thread and are recorded in `received`."""
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)


def stop_received() -> bool:
    return bool(received)


def exit_code(stop: BaseException | None = None) -> int:
    """128 + the signal: 143 for SIGTERM, else 130 (Ctrl-C)."""
    if isinstance(stop, Terminated) or (received and received[-1] == signal.SIGTERM):
        return EXIT_SIGTERM
    return EXIT_SIGINT


def describe(stop: BaseException | None = None) -> str:
    return "stopped by SIGTERM" if exit_code(stop) == EXIT_SIGTERM else "interrupted (Ctrl-C)"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises Terminated in the main thread. Leaves things alone off
    the main thread (handlers can only be set there) and when a handler other than the
    default is installed (the command line's, or a caller's own)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def terminate_now() -> None:
    """End this process as SIGTERM's default action would (status 143 to a shell), once the
    caller has saved what it had: a notebook kernel whose runtime is being stopped."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
