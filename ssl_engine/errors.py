"""Errors the user can fix: a bad config value, a missing file, an empty folder.

Anything raised as a `UserError` is shown as one clear line (the CLI prints it to stderr
and exits with code 2; the app shows it in a message box). Everything else is a bug.
A config's problems are `Problem`s: the address of the setting at fault and what is wrong
with it, so that a form puts each beside its own field without reading the text.
"""

from __future__ import annotations

from typing import NamedTuple


class UserError(Exception):
    """A problem with the user's input, described in one line they can act on."""


class Problem(NamedTuple):
    """One thing wrong with a config: the address of its setting (`optim.lr`, `method.temperature`,
    `augment.views[0].hue`; see `ssl_engine.addresses`), or '' when no one setting is at fault
    (an unreadable file), and the message that follows the address ('must be > 0, got -1').

    A problem compared with a string is compared as the line it reads as, so that code holding
    the lines users read (a test of a message) still finds its problem; compared with a pair,
    as a pair. Being equal to both, it has no hash."""

    address: str
    message: str

    def __str__(self) -> str:
        """The line users read: 'optim.lr must be > 0, got -1'."""
        return f"{self.address} {self.message}" if self.address else self.message

    def __eq__(self, other) -> bool:
        return str(self) == other if isinstance(other, str) else tuple.__eq__(self, other)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = None


class ConfigError(UserError):
    """One or more config fields are invalid; `problems` holds one `Problem` per field (a plain
    line given instead is a problem with no address) and `lines` what users read of them."""

    def __init__(self, problems: list[Problem | str]):
        self.problems = [p if isinstance(p, Problem) else Problem("", p) for p in problems]
        super().__init__("; ".join(self.lines))

    @property
    def lines(self) -> list[str]:
        return [str(problem) for problem in self.problems]


class DataError(UserError):
    """A data source cannot be read: missing folder, no images, failed download."""
