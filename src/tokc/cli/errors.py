"""The two ways a tokc command fails: one line `tokc: error: ...` on stderr, never a traceback."""

import click


class Failure(click.ClickException):
    """The command could not do its work: exit code 1."""

    def show(self, file=None) -> None:
        click.echo(f"tokc: error: {self.format_message()}", err=True)


class Usage(click.UsageError):
    """The command was called wrongly: exit code 2."""

    def show(self, file=None) -> None:
        click.echo(f"tokc: error: {self.format_message()}", err=True)
