"""The address of a setting: the one name users, messages, recipes, the command line and the forms
give it.

An address is a dotted name: `optim.lr`, `data.image_size`, `method.temperature`,
`augment.views[0].hue`. A config table (what TOML files hold) keeps most settings where their
address says; the method's own parameters are the exception, kept in their own table so that
they never collide with the method's name and recipe:

    method.temperature    <->  ("method", "params", "temperature")    [method.params] temperature
    augment.views[0].hue  <->  ("augment", "views", 0, "hue")          [[augment.views]] hue
    optim.lr              <->  ("optim", "lr")                          [optim] lr

`table_path` and `address_of` convert between the two; nothing else spells either out.
"""

from __future__ import annotations

import re

METHOD_OWN = ("name", "recipe", "params")  # the method table's own entries; any other method.X is a parameter
_INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")   # views[0]


def table_path(address: str) -> tuple:
    """Where the setting `address` lives in a config table: 'method.temperature' ->
    ('method', 'params', 'temperature'), 'augment.views[0].hue' -> ('augment', 'views', 0, 'hue').

    Also read: a list index as a part of its own ('augment.views.0.hue', the command line's
    older spelling) and the table path written out ('method.params.temperature', as a TOML
    file shows it); `address_of` gives the one address back."""
    path: list = []
    for part in address.split("."):
        indexed = _INDEXED.match(part)
        if indexed:
            path += [indexed[1], int(indexed[2])]
        else:
            path.append(int(part) if part.isdigit() else part)
    if path[0] == "method" and len(path) > 1 and path[1] not in METHOD_OWN:
        path.insert(1, "params")
    return tuple(path)


def address_of(path: tuple) -> str:
    """The address of the setting at table path `path` (the inverse of `table_path`):
    ('method', 'params', 'temperature') -> 'method.temperature'."""
    if tuple(path[:2]) == ("method", "params"):
        path = ("method",) + tuple(path[2:])
    address = ""
    for part in path:
        address += f"[{part}]" if isinstance(part, int) else (f".{part}" if address else str(part))
    return address


def section_of(address: str) -> str:
    """The config section an address is in: 'augment.views[0].hue' -> 'augment'."""
    return table_path(address)[0]


def value_at(table: dict, address: str):
    """The value config table `table` holds for `address` (KeyError or IndexError when none)."""
    node = table
    for part in table_path(address):
        node = node[part]
    return node
