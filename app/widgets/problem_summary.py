"""The toolbar's summary of what keeps Start disabled: "3 problems: learning rate, epochs,
batch size". A click goes to the first field (it may be scrolled out of view), the arrow lists
every problem, each going to its own field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtWidgets import QMenu, QToolButton

SHOWN_NAMES = 3  # names in the button's text; the menu holds all


@dataclass(frozen=True)
class Problem:
    name: str                              # the field as the form calls it
    message: str                           # the message, in the form's words
    go: Callable[[], None] | None = None   # shows and focuses the field


def summary(problems: list[Problem]) -> str:
    """'1 problem: learning rate', '4 problems: lr, epochs, batch size, …'."""
    names = list(dict.fromkeys(problem.name for problem in problems))
    shown = ", ".join(names[:SHOWN_NAMES]) + (", …" if len(names) > SHOWN_NAMES else "")
    return f"{len(problems)} problem{'s' if len(problems) != 1 else ''}: {shown}"


class ProblemSummary(QToolButton):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("problem_summary")
        self.setStyleSheet("QToolButton { color: #d9534f; }")
        self.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.setMenu(QMenu(self))
        self.problems: list[Problem] = []
        self.clicked.connect(self.go_to_first)

    def show_problems(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        if not problems:
            return
        self.setText(summary(problems))
        self.setToolTip("\n".join(problem.message for problem in problems) + "\n\nclick to go to the first field")
        menu = self.menu()
        menu.clear()
        for problem in problems:
            item = menu.addAction(problem.message)
            item.setEnabled(problem.go is not None)
            if problem.go is not None:
                item.triggered.connect(problem.go)

    def go_to_first(self) -> None:
        first = next((problem for problem in self.problems if problem.go is not None), None)
        if first is not None:
            first.go()
