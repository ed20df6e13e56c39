"""The `tokc` command line: a click group; each subcommand lives in its own module."""

from contextlib import contextmanager

import click

from tokc import __version__
from tokc.cli.errors import Failure, Usage

EXIT_CODES = """\b
Exit status: 0 success; 1 failure (a missing, unreadable or corrupt file, an output that
exists or cannot be written, a codec error); 2 usage (unknown command or option, bad or
conflicting option values). Errors are one line on stderr: `tokc: error: FILE: what`."""


class _Group(click.Group):
    """click's group, with every error one `tokc: error:` line: usage errors (click's own
    included) exit 2, the rest 1 (or their own code)."""

    def make_context(self, *args, **kwargs):
        with _one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line():
            return super().invoke(ctx)


@contextmanager
def _one_line():
    try:
        yield
    except (Failure, Usage, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as e:
        raise Usage(e.format_message()) from None
    except click.ClickException as e:
        failure = Failure(e.format_message())
        failure.exit_code = e.exit_code
        raise failure from None


@click.group(cls=_Group, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tokc")
def main() -> None:
    """tokc: learned tokenizers as real codecs."""


def _register() -> None:
    # Subcommands register themselves on import; a module that is not written yet is skipped.
    import importlib

    for name in ("info", "bench", "codec", "export", "train", "inspect", "batch"):
        try:
            importlib.import_module(f"tokc.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"tokc.cli.{name}":
                raise


_register()
