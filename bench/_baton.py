"""Round-robin turns between benchmark threads (shared by bench scripts; not a benchmark).

Two recipes that take turns step by step see the same machine load, so their step-time
ratio holds on a busy machine. Imported as bench._baton by bench/loop_overhead.py and bench/time_to_quality.py.
"""

from __future__ import annotations

import threading
import time


class Baton:
    """Round-robin turns between threads; each holder's time per step, evaluations excluded."""

    def __init__(self, names):
        self.cv = threading.Condition()
        self.order, self.turn, self.t = list(names), 0, 0.0
        self.times = {n: [] for n in names}

    def _wait(self, name):
        self.cv.wait_for(lambda: self.order[self.turn] == name)
        self.t = time.perf_counter()

    def start(self, name):
        with self.cv:
            self._wait(name)

    def restart_clock(self):
        """The holder did untimed work (an evaluation) since its turn began."""
        self.t = time.perf_counter()

    def step_done(self, name):
        with self.cv:
            self.times[name].append(time.perf_counter() - self.t)
            self.turn = (self.turn + 1) % len(self.order)
            self.cv.notify_all()
            self._wait(name)

    def finish(self, name):
        with self.cv:
            i = self.order.index(name)
            self.order.pop(i)
            if self.order:
                if i < self.turn:
                    self.turn -= 1
                self.turn %= len(self.order)
            self.cv.notify_all()
