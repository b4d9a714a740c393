"""Errors as a user meets them: one line `error: ...` and exit 2 for every failure, and a
Ctrl-C that says how to resume and exits 130.

    install_error_hook()                      # first thing in a script
    require(rate > 0, f"--lr={rate}: expected > 0")
"""
import atexit
import os
import sys


class UserError(Exception):
    """A problem with the user's input or settings: printed as one line, exit code 2."""


class interrupted:
    """What a Ctrl-C says: the training loop sets `resume_epoch` (counted from 0, said counted
    from 1 like Keras' progress lines) after every epoch it saves;
    a stage started with --retrain=True sets `retrain` (its rerun would start over)."""
    resume_epoch = None
    retrain = False


def one_line(kind, error):
    """The `error: ...` line for an exception that ends a script."""
    if issubclass(kind, UserError):
        return f"error: {error}"
    if issubclass(kind, OSError) and error.strerror:  # no space, read-only, permission, ...
        where = f": {error.filename}" if error.filename else ""
        return f"error: {error.strerror}{where}" + (f" -> {error.filename2}" if error.filename2 else "")
    text = str(error).strip().splitlines()
    return (f"error: unexpected {kind.__name__}: {text[0] if text else ''} "
            "(set NOISY_TRACEBACK=1 to see the traceback)")


def _report(kind, error, traceback):
    if issubclass(kind, KeyboardInterrupt):
        epoch, command = interrupted.resume_epoch, "the same command"
        if interrupted.retrain and epoch is not None:
            command = "the same command without --retrain=True"
        print(f"interrupted: rerun {command} to " + (
            f"resume after epoch {epoch + 1}" if epoch is not None else "start again (no epoch was finished)"),
            file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # release the stage's lock
        os._exit(130)  # now: worker threads of a data pipeline must not hold the exit up
    if os.environ.get("NOISY_TRACEBACK") and not issubclass(kind, UserError):
        sys.__excepthook__(kind, error, traceback)
    print(one_line(kind, error), file=sys.stderr)
    sys.exit(2)


def install_error_hook():
    """Make a script that fails print one line `error: <message>` and exit with 2 (its own
    UserError, an OSError naming its path, or anything unexpected), and a Ctrl-C print
    how to resume and exit with 130."""
    sys.excepthook = _report


def require(condition, message):
    """Raise UserError(message) unless condition holds: for range checks on settings."""
    if not condition:
        raise UserError(message)
