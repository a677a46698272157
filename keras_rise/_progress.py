"""Progress bars that follow Keras' `verbose` convention.

`0` is silent, `1` a `keras.utils.Progbar`, `2` one line at the end, and
`"auto"` the bar only on long calls: it appears once a call has run for
`AUTO_DELAY` seconds (as tqdm's `delay`), so that short calls in tests and
notebooks print nothing while a long one shows how far it has come. Where
standard output cannot redraw a bar (a file, a pipe, a job's log), `"auto"`
writes the one line of `2` instead, for long calls only: Keras' bar
redraws with carriage returns and colour codes wherever it runs on Linux.

The RISE loop runs inside one `tf.function`, so its progress is reported
from the graph: `graph_hook` gives the engine a function that adds a
`tf.numpy_function` after each loop step, and the call's `MaskProgress`
receives the masks summed so far. A loop compiled without progress has no
such op.
"""

import itertools
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

VERBOSE_VALUES = (0, 1, 2, "auto")

# Seconds a call runs before `verbose="auto"` shows its bar.
AUTO_DELAY = 2.0


def check_verbose(value, name="verbose"):
    """Returns `value` if it is one of `VERBOSE_VALUES`, else raises."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(
                f'`{name}` must be 0, 1, 2 or "auto". Received: {name}={value!r}.'
            )
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f'`{name}` must be 0, 1, 2 or "auto" (silent, a progress bar, one line '
            f"at the end, or a bar once a call has run {AUTO_DELAY:g} s). Received: "
            f"{name}={value!r} (of type {type(value).__name__})."
        )
    if int(value) not in (0, 1, 2):
        raise ValueError(
            f'`{name}` must be 0, 1, 2 or "auto". Received: {name}={int(value)}.'
        )
    return int(value)


def interactive():
    """Whether standard output can redraw a bar: a terminal or a notebook."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


class Progress:
    """A `keras.utils.Progbar` shown as `verbose` says.

    Args:
        verbose: a value of `VERBOSE_VALUES` (checked by `check_verbose`).
        target: int, the units the work will take, or `None` if unknown.
        unit_name: str, the unit the bar counts.
        delay: float, seconds before `verbose="auto"` shows the bar, or
            `None` for `AUTO_DELAY`. Defaults to `None`.
    """

    def __init__(self, verbose, target, unit_name, delay=None):
        self.verbose = verbose
        self.delay = AUTO_DELAY if delay is None else delay
        self._start = time.monotonic()
        self._shown = verbose == 1
        # One line at the end: `2`, or "auto" where no bar can be redrawn.
        self._one_line = verbose == 2 or (verbose == "auto" and not interactive())
        self.current = 0
        # Made now, so that its rate and elapsed time count from the start
        # even when "auto" shows it later.
        self.bar = None
        if verbose != 0:
            self.bar = keras.utils.Progbar(
                target, verbose=2 if self._one_line else 1, unit_name=unit_name
            )

    def update(self, current):
        """Moves the bar to `current` units (never back)."""
        if current <= self.current:
            return
        self.current = current
        if self.bar is None or self._one_line:
            return  # the one line is written by `close`
        if not self._shown and time.monotonic() - self._start >= self.delay:
            self._shown = True
        if self._shown:
            self.bar.update(current, finalize=False)

    def add(self, units):
        """Moves the bar on by `units`."""
        self.update(self.current + units)

    def close(self):
        """Ends the bar at the units done (a tolerance may stop short of the
        target); prints nothing if it was never shown, nor the one line of a
        short "auto" call."""
        if self.bar is None:
            return
        if self._one_line:
            if self.verbose == "auto" and time.monotonic() - self._start < self.delay:
                return
        elif not self._shown:
            return
        if self.bar.target is None:
            self.bar.target = self.current
        self.bar.update(self.current, finalize=True)


class MaskProgress(Progress):
    """The progress of one `RiseExplainer` call, in masks.

    The call runs its images in chunks; each chunk is one compiled loop over
    masks, which reports the masks it has summed (`in_chunk`) until the
    chunk ends (`end_chunk`).
    """

    def __init__(self, verbose, target, delay=None):
        super().__init__(verbose, target, "mask", delay)
        self._chunks_done = 0
        self._lock = threading.Lock()

    def in_chunk(self, count):
        """`count` masks of the current chunk are summed."""
        with self._lock:
            self.update(self._chunks_done + int(count))

    def end_chunk(self, count):
        """The current chunk ended after `count` masks."""
        with self._lock:
            self._chunks_done += int(count)
            self.update(self._chunks_done)


# The calls whose loops report progress, by the id their loop is given.
_ACTIVE = {}
_IDS = itertools.count()


def register(progress):
    """Lets the loops given the returned id report to `progress`.

    Returns:
        The id, an int64 scalar tensor: a tensor, so that a new call does not
        retrace the loop.
    """
    call_id = next(_IDS)
    _ACTIVE[call_id] = progress
    return tf.constant(call_id, tf.int64)


def unregister(call_id):
    """Ends the reports of the call `register` gave this id."""
    _ACTIVE.pop(int(call_id), None)


def _report(call_id, count):
    progress = _ACTIVE.get(int(call_id))
    if progress is not None:
        progress.in_chunk(count)


def graph_hook(call_id):
    """The engine's `progress` function for the call of `call_id`.

    Returns:
        A function of the masks summed so far (a float32 scalar tensor)
        that adds a `tf.numpy_function` passing them to the call's
        `MaskProgress`.
    """

    def report(count):
        tf.numpy_function(_report, [call_id, count], [], stateful=True, name="rise_progress")

    return report
