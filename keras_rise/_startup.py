"""A quiet TensorFlow start-up for the `keras-rise` command.

TensorFlow writes its start-up log (absl, oneDNN, CUDA stubs, CPU features)
to file descriptor 2 while it is imported, whatever `TF_CPP_MIN_LOG_LEVEL`
says, and logs more at its first operations. A command's stderr is for the
user's errors only, so when this process is the `keras-rise` command it
imports TensorFlow (once its arguments are read: `--help` and usage errors
need none of it) with descriptor 2 captured and writes back only what is not
start-up log; `TF_CPP_MIN_LOG_LEVEL` (unless set) silences the
later lines. Imported as a library, keras_rise leaves TensorFlow's output as
it is. The same holds for the notices Apache Beam logs at import in
`python -m keras_rise.beam`, and for TensorFlow's warnings that a function is
traced anew (`DropRetracingNotices`), which the library also drops where they
are about its own functions or its own eager calls of a model.
"""

import contextlib
import functools
import logging
import os
import re
import sys
import tempfile

# absl's informational and warning lines ("I0000 00:00:... file.cc:12] ..."),
# its note that logging is not initialised yet, and the continuation line of
# the CPU-feature notice.
_STARTUP_LINE = re.compile(
    r"^([IW]\d{4} \d\d:\d\d:\S+\s+\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) "
    r"|To enable the following instructions: )"
)

COMMAND_NAMES = ("keras-rise", "keras-rise.exe", "keras-rise-script.py")


# The modules run as commands (`python -m keras_rise`, `python -m
# keras_rise.beam`).
COMMAND_MODULES = ("keras_rise", "keras_rise.cli", "keras_rise.beam")


def is_command_line(modules=COMMAND_MODULES):
    """True when this process runs the `keras-rise` command (or one of
    `modules` with `python -m`: by default `keras_rise.cli` and
    `keras_rise.beam`)."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    launched = getattr(sys, "orig_argv", ())
    return program in COMMAND_NAMES or any(name in launched for name in modules)


@contextlib.contextmanager
def quiet_tensorflow_startup():
    """Drops TensorFlow's start-up log from stderr in the `keras-rise` command.

    Anything else written to descriptor 2 inside the block (a Python
    warning, an error) is written back when it ends. Outside the command,
    or once TensorFlow is imported, it does nothing.
    """
    if "tensorflow" in sys.modules or not is_command_line():
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not _STARTUP_LINE.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@functools.cache
def compile_once_with_xla():
    """Compiles a trivial function with XLA, to be called inside
    `quiet_tensorflow_startup` once TensorFlow is imported; later calls in
    the process (commands run from Python, one after another) do nothing.

    Some TensorFlow releases (2.20, say) log "Compiled cluster using XLA!"
    at the first XLA compilation of a process, whatever
    `TF_CPP_MIN_LOG_LEVEL` says; RISE's masks are always compiled with XLA,
    so the command's first explanation would write it to stderr. Made here,
    it falls in the captured start-up log. It costs about 0.06 s.
    """
    import tensorflow as tf

    try:
        tf.function(lambda x: x + 1.0, jit_compile=True)(tf.constant(0.0))
    except Exception:  # a build without XLA: the masks would say so later
        pass


# Notices Apache Beam logs on the root logger that say nothing about the run:
# an optional BigQuery client it does not use here, and a memory probe whose
# module failed to import.
_BEAM_NOTICES = (
    "apitools not found, and bigquery client libraries are not available",
    "Resource module is not available for current platform",
)


class _DropBeamNotices(logging.Filter):
    def filter(self, record):
        return not str(record.msg).startswith(_BEAM_NOTICES)


def quiet_beam_notices():
    """Drops Beam's environment notices from the root logger in the commands.

    Called before `apache_beam` is imported. As a library (a user's own
    pipeline), the root logger is left as it is.
    """
    if not is_command_line():
        return
    root = logging.getLogger()
    if not any(isinstance(f, _DropBeamNotices) for f in root.filters):
        root.addFilter(_DropBeamNotices())


# TensorFlow's warning that a function keeps being traced anew. Keras'
# TensorFlow backend makes a new XLA function at every eager call of some
# convolutions (ConvNeXt's depthwise ones), so the commands' eager calls of
# such a model (each image's classes) would repeat it on stderr, about Keras'
# code rather than the user's; and a program's first explanation of such a
# model, at its eager probe, would log it where `model.predict` does not.
_RETRACING_NOTICE = "triggered tf.function retracing"


class DropRetracingNotices(logging.Filter):
    """A filter of TensorFlow's logger that drops its retracing warnings:
    every one, or those naming one of `functions` (e.g. `"_CompiledLoop."`)."""

    def __init__(self, functions=None):
        super().__init__()
        self.functions = None if functions is None else tuple(functions)

    def filter(self, record):
        message = record.getMessage()
        return not (
            _RETRACING_NOTICE in message
            and (self.functions is None or any(name in message for name in self.functions))
        )


@contextlib.contextmanager
def retracing_notices_dropped():
    """Drops TensorFlow's retracing warnings logged inside the block: the
    library's own eager calls of a model (`keras_rise.inputs.ModelInputs.probe`)
    are not the user's code to change."""
    logger = logging.getLogger("tensorflow")
    notices = DropRetracingNotices()
    logger.addFilter(notices)
    try:
        yield
    finally:
        logger.removeFilter(notices)


def quiet_retracing_notices():
    """Drops TensorFlow's retracing warnings from its logger in the commands.

    As a library, TensorFlow's logger is left as it is (but for the
    library's own eager calls, `retracing_notices_dropped`).
    """
    if not is_command_line():
        return
    logger = logging.getLogger("tensorflow")
    if not any(
        isinstance(f, DropRetracingNotices) and f.functions is None for f in logger.filters
    ):
        logger.addFilter(DropRetracingNotices())
