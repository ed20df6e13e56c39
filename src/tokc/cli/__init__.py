"""The `tokc` command line: a click group; each subcommand lives in its own module."""

import click

from tokc import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tokc")
def main() -> None:
    """tokc: learned tokenizers as real codecs."""


def _register() -> None:
    # Subcommands register themselves on import; a module that is not written yet is skipped.
    import importlib

    for name in ("info", "bench", "codec", "export", "train", "inspect"):
        try:
            importlib.import_module(f"tokc.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"tokc.cli.{name}":
                raise


_register()
