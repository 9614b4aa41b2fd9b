"""Errors the user can fix: a bad config value, a missing file, an empty folder.

Anything raised as a `UserError` is shown as one clear line (the CLI prints it to stderr
and exits with code 2; the app shows it in a message box). Everything else is a bug.
"""


class UserError(Exception):
    """A problem with the user's input, described in one line they can act on."""


class ConfigError(UserError):
    """One or more config fields are invalid; `problems` holds one line per field."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class DataError(UserError):
    """A data source cannot be read: missing folder, no images, failed download."""
