"""What every CLI of the toolkit shares: its Typer app, and how it ends on a failure the user can fix
(one `error:` line, exit status 2).

fer-train, fer-export, fer-bench and fer-edge are each made by `make_app`, started by `run_app`, and
run their commands through `guarded`, each naming its own error types and what Ctrl-C leaves behind.
A traceback is left only for a bug.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer

from fer_edge.errors import EdgeError, printable
from fer_edge.signals import sigterm_as_ctrl_c

T = TypeVar("T")
DISTRIBUTION = "fer-edge-toolkit"


def make_app(help: str, version: bool = True) -> typer.Typer:
    """A command group with plain Click help, so option help wraps under the option at any width
    instead of being cut off, and (for a top-level command) `--version`."""
    app = typer.Typer(
        rich_markup_mode=None,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    if version:

        @app.callback()
        def _options(
            version: bool = typer.Option(
                False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
            ),
        ) -> None:
            pass

    return app


def _print_version(asked: bool) -> None:
    if asked:
        from importlib import metadata

        try:
            number = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        typer.echo(f"{DISTRIBUTION} {number}")
        raise typer.Exit()


# Click's usage error (a mistyped option, a value out of range) and its base, the error Click shows
# itself; Typer exports only a subclass of them.
UsageError = typer.BadParameter.__mro__[1]
ClickError = UsageError.__mro__[1]


def run_app(app: typer.Typer, prog_name: str | None = None) -> NoReturn:
    """Run a CLI to its exit status. A usage error is one `error:` line that points to `--help`,
    like every other failure, instead of Click's usage block."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name=prog_name, standalone_mode=False)
    except UsageError as err:
        if err.ctx is None or type(err).__name__ == "NoArgsIsHelpError":  # no arguments: the help itself
            err.show()
            sys.exit(err.exit_code)
        _error_line(f"{err.format_message()} (see '{err.ctx.command_path} --help')")
        sys.exit(err.exit_code)
    except ClickError as err:
        _error_line(err.format_message())
        sys.exit(err.exit_code)
    except typer.Abort:
        _error_line("aborted")
        sys.exit(1)
    # typer.Exit's code comes back as the value; the commands themselves return None.
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int = 2) -> NoReturn:
    _error_line(message)
    raise typer.Exit(code)


def _error_line(message: str) -> None:
    typer.secho("error:", fg="red", err=True, nl=False)
    typer.echo(f" {printable(message)}", err=True)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def guarded(
    action: Callable[[], T], errors: tuple[type[BaseException], ...] = (), interrupted: str = "interrupted"
) -> T:
    """Run a command. `errors` (and the toolkit's EdgeError, an existing output, a bad value) become one
    line; any other OSError names its file; Ctrl-C says `interrupted` and exits 130, SIGTERM the same
    with 143; a closed stdout ends quietly with 141."""
    terminated = []
    try:
        with sigterm_as_ctrl_c(terminated):
            return action()
    except KeyboardInterrupt:
        fail(interrupted, 128 + signal.SIGTERM if terminated else 130)
    except BrokenPipeError:
        # The reader of stdout stopped (`| head`): end without a word, as a Unix tool ends on SIGPIPE,
        # and with stdout on /dev/null so that Python's own flush at exit does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(128 + signal.SIGPIPE) from None
    except (*errors, EdgeError, FileExistsError, ValueError) as err:
        fail(first_line(err))
    except OSError as err:
        if err.filename is None and err.errno in FULL and _stdout_is_a_file():
            # The toolkit names the files it writes; a full disk that names none is stdout's redirect.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush: quiet
            fail(f"cannot write to standard output ({err.strerror}); what it holds is cut short")
        fail(f"{err.filename or ''}: {err.strerror or err}".lstrip(": "))


FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _stdout_is_a_file() -> bool:
    try:
        return stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False
