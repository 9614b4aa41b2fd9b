"""Tags on a folder's images, kept beside the embedding cache so they outlive the session.

A tag is a short name a user gives a selection of images ("blurry", "check label"). Tags
belong to the images, not to a model: one JSON file per folder, in
`<cache_dir>/tags/<sha1 of the folder path[:16]>.json`, holding the folder and, for each
tag, the tagged files' paths relative to the folder (sorted, so the file diffs cleanly).
The file is replaced atomically; a file that cannot be read is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from .folder_embedding import default_cache_dir

TAGS_FORMAT = 1
MAX_TAG_LENGTH = 40


def tags_file(folder: str, cache_dir: str | None = None) -> Path:
    """Where the tags of `folder` live (`cache_dir` None or "": the default cache folder)."""
    root = os.path.abspath(folder)
    return Path(cache_dir or default_cache_dir()) / "tags" / (hashlib.sha1(root.encode()).hexdigest()[:16] + ".json")


def checked_tag(name: str) -> str:
    """`name` stripped, or UserError saying why it cannot be a tag."""
    tag = " ".join(str(name).split())
    if not tag:
        raise UserError("a tag needs a name")
    if len(tag) > MAX_TAG_LENGTH:
        raise UserError(f"a tag's name is at most {MAX_TAG_LENGTH} characters ({len(tag)} given)")
    return tag


class FolderTags:
    """The tags of one folder's images: tag name -> set of paths relative to the folder."""

    def __init__(self, folder: str, cache_dir: str | None = None):
        self.root = os.path.abspath(folder)
        self.path = tags_file(self.root, cache_dir)
        self.tags: dict[str, set[str]] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            tags = data["tags"]
            if data.get("format") != TAGS_FORMAT or not isinstance(tags, dict):
                raise ValueError("unknown format")
            self.tags = {str(name): {str(p) for p in paths} for name, paths in tags.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"cannot read the tags of {self.root} from {self.path} ({error}); "
                            "move that file away to start again with no tags") from None

    def names(self) -> list[str]:
        """The tags in use, sorted case-insensitively."""
        return sorted((name for name, paths in self.tags.items() if paths), key=str.casefold)

    def relative(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")

    def add(self, tag: str, paths: list[str]) -> int:
        """Tag these image files (absolute paths in this folder); returns how many were newly tagged."""
        tagged = self.tags.setdefault(checked_tag(tag), set())
        before = len(tagged)
        tagged.update(self.relative(path) for path in paths)
        return len(tagged) - before

    def remove(self, tag: str, paths: list[str]) -> int:
        """Untag these image files; returns how many carried the tag."""
        tagged = self.tags.get(tag, set())
        gone = tagged & {self.relative(path) for path in paths}
        tagged -= gone
        if not tagged:
            self.tags.pop(tag, None)
        return len(gone)

    def save(self) -> None:
        """Write the tags (atomically); UserError when the cache folder is not writable."""
        data = {"format": TAGS_FORMAT, "folder": self.root,
                "tags": {name: sorted(paths) for name, paths in sorted(self.tags.items()) if paths}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tags-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(data, file, indent=1, ensure_ascii=False)
            os.replace(temporary, self.path)
        except OSError as error:
            raise UserError(f"cannot save the tags in {self.path.parent} ({error.strerror or error})") from None


class ImageTags:
    """Tags over the rows of an embedding of one or more folders (`folder_of[row]` indexes `folders`)."""

    def __init__(self, folders: list[FolderTags], paths: list[str], folder_of: np.ndarray):
        if len(paths) != len(folder_of):
            raise ValueError(f"{len(paths)} paths for {len(folder_of)} folder indices")
        self.folders, self.paths, self.folder_of = folders, list(paths), np.asarray(folder_of, np.int64)
        self._relative = [folders[f].relative(path) for f, path in zip(self.folder_of, self.paths)]

    @classmethod
    def load(cls, roots: list[str], paths: list[str], folder_of: np.ndarray, cache_dir: str | None = None):
        return cls([FolderTags(root, cache_dir) for root in roots], paths, folder_of)

    def names(self) -> list[str]:
        return sorted({name for folder in self.folders for name in folder.names()}, key=str.casefold)

    def rows(self, tag: str) -> np.ndarray:
        """The rows carrying `tag`, int64 ascending."""
        tagged = [folder.tags.get(tag, set()) for folder in self.folders]
        return np.flatnonzero([relative in tagged[f] for f, relative in zip(self.folder_of, self._relative)])

    def _per_folder(self, rows: np.ndarray):
        rows = np.asarray(rows, np.int64)
        for index, folder in enumerate(self.folders):
            mine = rows[self.folder_of[rows] == index]
            if len(mine):
                yield folder, [self.paths[row] for row in mine]

    def add(self, tag: str, rows: np.ndarray) -> int:
        """Tag these rows and save every folder touched; returns how many were newly tagged."""
        tag = checked_tag(tag)
        changed = [(folder, folder.add(tag, paths)) for folder, paths in self._per_folder(rows)]
        for folder, _ in changed:
            folder.save()
        return sum(count for _, count in changed)

    def remove(self, tag: str, rows: np.ndarray) -> int:
        """Untag these rows and save every folder touched; returns how many carried the tag."""
        changed = [(folder, folder.remove(tag, paths)) for folder, paths in self._per_folder(rows)]
        for folder, _ in changed:
            folder.save()
        return sum(count for _, count in changed)

    def groups(self) -> tuple[np.ndarray, list[str]]:
        """Each row's group for a colouring by tag: the index in `names()` of its first tag
        (alphabetically), -1 when untagged; and the names."""
        names = self.names()
        groups = np.full(len(self.paths), -1, np.int64)
        for value in reversed(range(len(names))):  # the first name wins: set it last
            groups[self.rows(names[value])] = value
        return groups, names
