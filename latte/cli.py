"""How every command ends: a user's mistake is one `error:` line on stderr and exit code 2; a bug keeps its traceback.

    if __name__ == "__main__":
        raise SystemExit(run_cli(main))

User errors are the ones this package raises about inputs (config, data, checkpoints, launch) and the operating
system's file errors (missing file, permission, full disk). Anything else is a bug and is raised as it is.
`--debug` (anywhere on the command line, or LATTE_DEBUG=1) raises user errors with their traceback too.
"""
import errno
import os
import sys

DEBUG_FLAG, DEBUG_VAR = "--debug", "LATTE_DEBUG"
USER_OS_ERRNOS = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                  errno.EDQUOT)


def user_error_types():
    from latte.checkpoint_io import CheckpointError
    from latte.config import ConfigError
    from latte.data.errors import DataError
    from latte.launch import LaunchError

    return ConfigError, DataError, CheckpointError, LaunchError


def is_user_error(err):
    if isinstance(err, user_error_types()):
        return True
    return isinstance(err, OSError) and err.errno in USER_OS_ERRNOS


def describe(err):
    """One line: the message, or for an OS error its reason and the file."""
    if isinstance(err, OSError) and err.errno in USER_OS_ERRNOS and err.filename:
        return f"{err.strerror}: {err.filename}"
    text = " ".join(str(err).split()) or type(err).__name__
    return text


def run_cli(main, argv=None, exit_code_from_main=True):
    """Runs main(argv) and returns the process exit code: main's own (when exit_code_from_main and it returns an
    int), else 0; 2 after printing `error: ...` for a user error (unless --debug)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_VAR, "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        result = main(args)
    except Exception as err:  # noqa: BLE001 -- sorted into user errors and bugs below
        if debug or not is_user_error(err):
            raise
        print(f"error: {describe(err)}", file=sys.stderr)
        return 2
    if exit_code_from_main and isinstance(result, int) and not isinstance(result, bool):
        return result
    return 0
