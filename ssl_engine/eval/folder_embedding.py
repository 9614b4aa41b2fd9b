"""Embed a folder of images of any size, streaming, with an on-disk cache per model and folder.

The folder is listed by the rules of `ssl_engine.data.folder` (labels from first-level
subfolders, unlabelled when flat, hidden and non-image files ignored). Images are decoded in
chunks on a thread pool (Pillow releases the GIL), the next chunk while this one is embedded,
and each chunk's features and 64 px thumbnails go straight to .npy files on disk, so memory
holds one or two chunks whatever the size of the folder.

The cache lives in `<cache_dir>/<model key[:16]>/<sha1 of the folder path[:16]>/`:
`features.npy` (N, D) float32, `thumbnails.npy` (N, 64, 64, 3) uint8 and `index.json`, which
records each row's file (path relative to the folder, size, mtime_ns) and whether the row is
finished, plus the unreadable files with their reasons. On the next call rows whose file is
unchanged are reused and only new or changed files are decoded; removed files drop out. A
new generation is written to a temporary folder and renamed into place, so a crash never
leaves a half-written cache; when nothing changed the cached files are returned as they are.
Cancelling (or any failure) keeps the rows finished so far, so the next call resumes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.folder import (DECODE_WORKERS, UnreadableImage, class_labels, decode_image_and_thumbnail, list_folder,
                           no_readable_images)
from ..devices import resolve_device
from ..errors import DataError, UserError
from .embed import embed
from .model_source import EvalModel

THUMBNAIL_SIZE = 64
CACHE_FORMAT = 1
CACHE_ENV = "SSL_EXPLORER_CACHE"


@dataclass
class FolderEmbedding:
    root: str                       # absolute folder path
    paths: list[str]                # absolute path of each embedded image, sorted order
    labels: np.ndarray              # int64 (N,), -1 where unlabelled
    class_names: list[str]          # first-level subfolders that hold images; [] when unlabelled
    features: np.ndarray            # float32 (N, D) (may be a read-only np.memmap)
    thumbnails: np.ndarray          # uint8 (N, 64, 64, 3) (may be a read-only np.memmap)
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable files
    reused: int                     # how many rows came from the cache
    model_key: str

    @property
    def has_labels(self) -> bool:
        return bool(self.class_names) and bool((self.labels >= 0).any())


def class_name_of(embedding, row: int) -> str:
    """The class folder of image `row` of an embedding (anything with `labels` and
    `class_names`), '' when it has none."""
    label = int(embedding.labels[row])
    return embedding.class_names[label] if label >= 0 else ""


def combine_embeddings(folders: list[FolderEmbedding]) -> tuple[FolderEmbedding, np.ndarray]:
    """Several folders' embeddings as one (rows in folder order) and the folder of each row.

    One folder is returned as it is (its memmaps stay memmaps). Several are concatenated into
    memory: features are small (N x D float32) and the thumbnails 12 KB an image."""
    folder_of = np.concatenate([np.full(len(f.paths), i, np.int64) for i, f in enumerate(folders)])
    if len(folders) == 1:
        return folders[0], folder_of
    class_names = sorted({name for folder in folders for name in folder.class_names})
    labels = []
    for folder in folders:
        to_merged = np.array([class_names.index(name) for name in folder.class_names] + [-1], np.int64)
        labels.append(to_merged[np.where(folder.labels >= 0, folder.labels, -1)])
    combined = FolderEmbedding(
        root=os.path.commonpath([folder.root for folder in folders]),
        paths=[path for folder in folders for path in folder.paths],
        labels=np.concatenate(labels),
        class_names=class_names,
        features=np.concatenate([np.asarray(folder.features, np.float32) for folder in folders]),
        thumbnails=np.concatenate([np.asarray(folder.thumbnails) for folder in folders]),
        skipped=[item for folder in folders for item in folder.skipped],
        reused=sum(folder.reused for folder in folders),
        model_key=folders[0].model_key)
    return combined, folder_of



class EmbeddingCancelled(UserError):
    """The user cancelled; the rows finished so far are in the cache."""


def default_cache_dir() -> str:
    """$SSL_EXPLORER_CACHE, or ~/.cache/ssl_explorer/embeddings."""
    return os.environ.get(CACHE_ENV) or os.path.expanduser(os.path.join("~", ".cache", "ssl_explorer", "embeddings"))


# -- the .npy files, written and read through plain file handles --------------------------
# Rows are written and copied with seek/write/readinto rather than through a memory map: the
# pages of a written map stay in the process's resident set until it is closed, which would
# make memory grow with the folder; plain writes only pass through the OS page cache.

def _runs(rows: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(position in `rows`, first row, length) of each run of consecutive row numbers."""
    if len(rows) == 0:
        return
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(rows)]])
    for start, end in zip(starts.tolist(), ends.tolist()):
        yield start, int(rows[start]), end - start


class _RowFile:
    """One .npy file of fixed shape opened for row-wise reading or writing."""

    def __init__(self, path: Path, mode: str, dtype=None, shape=None):
        if mode == "w":  # open_memmap writes the header and sizes the (sparse) file
            created = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            self.offset, self.shape, self.dtype = created.offset, created.shape, created.dtype
            del created
            self.file = open(path, "r+b")
        else:
            self.file = open(path, "rb")
            version = np.lib.format.read_magic(self.file)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            self.shape, fortran, self.dtype = read_header(self.file)
            if fortran:
                raise ValueError("Fortran-ordered cache file")
            self.offset = self.file.tell()
        self.row_shape = tuple(self.shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def write(self, first_row: int, block: np.ndarray) -> None:
        self.file.seek(self.offset + first_row * self.row_bytes)
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())

    def read(self, first_row: int, count: int) -> np.ndarray:
        block = np.empty((count, *self.row_shape), dtype=self.dtype)
        self.file.seek(self.offset + first_row * self.row_bytes)
        if self.file.readinto(memoryview(block).cast("B")) != block.nbytes:
            raise ValueError("cache file is shorter than its header says")
        return block

    def close(self) -> None:
        self.file.close()


COPY_ROWS = 1024  # rows per block when copying between cache files


class _Generation:
    """One version of a folder's cache: features, thumbnails and the index, in one folder."""

    def __init__(self, folder: Path, rows: list[tuple[str, int, int]], feature_dim: int, mode: str = "w"):
        self.folder = folder
        self.rows = rows                  # (relative path, size, mtime_ns) of each row
        count = len(rows)
        self.features = _RowFile(folder / "features.npy", mode, np.float32, (count, feature_dim))
        self.thumbnails = _RowFile(folder / "thumbnails.npy", mode, np.uint8,
                                   (count, THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3))
        self.valid = np.zeros(count, dtype=bool)

    def write(self, rows: np.ndarray, features: np.ndarray, thumbnails: np.ndarray) -> None:
        """Store rows `rows` (sorted) from the blocks `features` and `thumbnails`, marked finished."""
        for position, first, length in _runs(rows):
            self.features.write(first, features[position:position + length])
            self.thumbnails.write(first, thumbnails[position:position + length])
        self.valid[rows] = True

    def copy_from(self, source: _Generation, source_rows: np.ndarray, rows: np.ndarray) -> None:
        """Copy rows `source_rows` of `source` into rows `rows`, a block of runs at a time."""
        for start in range(0, len(rows), COPY_ROWS):
            take, put = source_rows[start:start + COPY_ROWS], rows[start:start + COPY_ROWS]
            for position, first, length in _runs(take):
                self.write(put[position:position + length], source.features.read(first, length),
                           source.thumbnails.read(first, length))

    def save_index(self, model: EvalModel, root: str, skipped: dict[str, tuple[int, int, str]]) -> None:
        index = {"format": CACHE_FORMAT, "model_key": model.key, "root": root,
                 "feature_dim": self.features.shape[1], "thumbnail_size": THUMBNAIL_SIZE,
                 "rows": [[path, size, mtime, bool(valid)] for (path, size, mtime), valid in zip(self.rows, self.valid)],
                 "skipped": [[path, size, mtime, reason] for path, (size, mtime, reason) in sorted(skipped.items())]}
        (self.folder / "index.json").write_text(json.dumps(index))

    def close(self) -> None:
        self.features.close()
        self.thumbnails.close()


def _open_cached(entry: Path, model: EvalModel, root: str) -> tuple[_Generation, dict] | None:
    """The cache generation at `entry` for this model and folder, or None if absent or unusable."""
    try:
        index = json.loads((entry / "index.json").read_text())
        if (index.get("format") != CACHE_FORMAT or index.get("model_key") != model.key
                or index.get("root") != root or index.get("thumbnail_size") != THUMBNAIL_SIZE
                or index.get("feature_dim") != model.feature_dim):
            return None
        rows = [(str(path), int(size), int(mtime)) for path, size, mtime, _ in index["rows"]]
        generation = _Generation(entry, rows, model.feature_dim, mode="r")
        if generation.features.shape != (len(rows), model.feature_dim) \
                or generation.thumbnails.shape[0] != len(rows):
            generation.close()
            return None
        generation.valid = np.array([bool(row[3]) for row in index["rows"]], dtype=bool)
        return generation, index
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: embed afresh
        return None


def _replace_directory(new: Path, entry: Path) -> None:
    """Put `new` in place of `entry` (both in one parent folder) with renames."""
    old = None
    if entry.exists():
        old = entry.with_name(f"{entry.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(entry, old)
    os.replace(new, entry)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # an open memory map of it stays valid on POSIX


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _load(entry: Path, root: str, files: list[str], class_of: list[str | None],
          skipped: list[tuple[str, str]], reused: int, model: EvalModel) -> FolderEmbedding:
    labels, class_names = class_labels(class_of)
    return FolderEmbedding(
        root=root, paths=files, labels=labels, class_names=class_names,
        features=np.load(entry / "features.npy", mmap_mode="r"),
        thumbnails=np.load(entry / "thumbnails.npy", mmap_mode="r"),
        skipped=sorted(skipped), reused=reused, model_key=model.key)


def embed_folder(model: EvalModel, folder: str, *, cache_dir: str | None = None, batch_size: int = 128,
                 device: str = "auto", progress: Callable[[int, int, float], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> FolderEmbedding:
    """Features and thumbnails of every readable image under `folder` (see the module docstring).

    `cache_dir` None uses `default_cache_dir()`; "" disables the cache (the files live in a
    temporary folder until the result is loaded). `progress(done, total, images_per_second)`
    is called after each chunk, `total` being the files that need embedding; `cancelled()` is
    polled between chunks and raises EmbeddingCancelled. DataError when the folder is missing
    or holds no readable image.
    """
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    device = resolve_device(device)  # an unavailable device fails before any work
    listing = list_folder(folder)
    root = listing.root
    if not listing.files:
        raise no_readable_images(root, listing.skipped)
    use_cache = cache_dir != ""
    cache_root = Path(cache_dir or default_cache_dir()) if use_cache else Path(tempfile.mkdtemp(prefix="ssl_embed-"))
    try:
        entry = cache_root / model.key[:16] / hashlib.sha1(root.encode()).hexdigest()[:16]
        return _embed_with_cache(model, listing, entry, batch_size=batch_size, device=device, progress=progress,
                                 cancelled=cancelled, keeps_cache=use_cache)
    finally:
        if not use_cache:  # the returned memory maps stay readable after the unlink (POSIX)
            shutil.rmtree(cache_root, ignore_errors=True)


def _embed_with_cache(model, listing, entry: Path, *, batch_size, device, progress, cancelled,
                      keeps_cache: bool) -> FolderEmbedding:
    root = listing.root
    skipped = list(listing.skipped)
    cached = _open_cached(entry, model, root)
    old, old_row, old_skipped = None, {}, {}
    if cached is not None:
        old, index = cached
        # relative path -> (size, mtime_ns, row) of finished rows / (size, mtime_ns, reason) of unreadable files
        old_row = {path: (size, mtime, row) for row, (path, size, mtime) in enumerate(old.rows) if old.valid[row]}
        old_skipped = {path: (int(size), int(mtime), str(reason)) for path, size, mtime, reason in index["skipped"]}
    try:
        # Decide for each file: reuse a cached row, skip it as known unreadable, or embed it.
        files, class_of, row_stamps, reuse_from, unreadable = [], [], [], [], {}
        for file, class_name in zip(listing.files, listing.class_of):
            relative = os.path.relpath(file, root)
            stamp = _stamp(file)
            if stamp is None:
                skipped.append((file, "file not found"))
                continue
            known = old_skipped.get(relative)
            if known is not None and known[:2] == stamp:
                skipped.append((file, known[2]))
                unreadable[relative] = known
                continue
            cached_row = old_row.get(relative)
            reuse_from.append(cached_row[2] if cached_row is not None and cached_row[:2] == stamp else -1)
            files.append(file)
            class_of.append(class_name)
            row_stamps.append((relative, *stamp))
        reuse_from = np.array(reuse_from, dtype=np.int64)
        if not files:
            raise no_readable_images(root, sorted(skipped))
        if old is not None and old.valid.all() and np.array_equal(reuse_from, np.arange(len(old.rows))):
            # nothing changed: the cached generation is the answer, not rewritten
            return _load(entry, root, files, class_of, skipped, len(files), model)

        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            building = Path(tempfile.mkdtemp(prefix=f"{entry.name}.tmp-", dir=entry.parent))
        except OSError as error:
            raise UserError(f"cannot write the embedding cache in {entry.parent} ({error.strerror or error}); "
                            f"set {CACHE_ENV} to a writable folder or turn the cache off") from None
        new = _Generation(building, row_stamps, model.feature_dim)
        reused_rows = np.flatnonzero(reuse_from >= 0)
        if old is not None:
            try:
                new.copy_from(old, reuse_from[reused_rows], reused_rows)
            except BaseException:
                new.close()
                shutil.rmtree(new.folder, ignore_errors=True)
                raise
    finally:
        if old is not None:
            old.close()

    try:
        _embed_rows(model, new, files, np.flatnonzero(reuse_from < 0), unreadable, skipped, batch_size=batch_size,
                    device=device, progress=progress, cancelled=cancelled, keeps_cache=keeps_cache)
    except BaseException:  # cancelled or failed: keep the finished rows for the next call
        new.close()
        try:
            new.save_index(model, root, unreadable)
            _replace_directory(new.folder, entry)
        except OSError:  # the rows cannot be kept (disk full?); the error that stopped us matters more
            shutil.rmtree(new.folder, ignore_errors=True)
        raise
    kept = np.flatnonzero(new.valid)
    if len(kept) == 0:
        new.close()
        shutil.rmtree(new.folder, ignore_errors=True)
        raise no_readable_images(root, sorted(skipped))
    if len(kept) < len(files):  # files found unreadable just now: drop their rows
        new = _compacted(new, model, unreadable)
        files, class_of = [files[i] for i in kept], [class_of[i] for i in kept]
    new.save_index(model, root, unreadable)
    new.close()
    _replace_directory(new.folder, entry)
    return _load(entry, root, files, class_of, skipped, len(reused_rows), model)


def _compacted(generation: _Generation, model: EvalModel, unreadable: dict) -> _Generation:
    """A new generation beside `generation` holding only its finished rows; `generation` is removed."""
    keep = np.flatnonzero(generation.valid)
    compact = _Generation(Path(tempfile.mkdtemp(prefix="compact.tmp-", dir=generation.folder.parent)),
                          [generation.rows[i] for i in keep], model.feature_dim)
    compact.copy_from(generation, keep, np.arange(len(keep)))
    generation.close()
    shutil.rmtree(generation.folder, ignore_errors=True)
    return compact


def _embed_rows(model: EvalModel, generation: _Generation, files: list[str], rows: np.ndarray,
                unreadable: dict, skipped: list, *, batch_size: int, device: torch.device, progress, cancelled,
                keeps_cache: bool) -> None:
    """Decode, embed and store rows `rows` of `generation` (files[row]), chunk by chunk; files that
    cannot be read go to `skipped` and, by relative path with their stamp, to `unreadable`."""
    backbone = model.backbone if device.type == "cpu" else copy.deepcopy(model.backbone).to(device)

    def decode(path: str):
        try:
            return decode_image_and_thumbnail(path, model.image_size, THUMBNAIL_SIZE)
        except UnreadableImage as error:
            return str(error)

    chunks = [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]
    total, done, started = len(rows), 0, time.perf_counter()
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        pending = pool.map(decode, [files[i] for i in chunks[0]]) if chunks else None
        for number, chunk in enumerate(chunks):
            if cancelled is not None and cancelled():
                kept = " (kept in the cache for next time)" if keeps_cache else ""
                raise EmbeddingCancelled(f"embedding cancelled after {done} of {total} images{kept}")
            decoded = list(pending)
            if number + 1 < len(chunks):  # decode the next chunk while this one is embedded
                pending = pool.map(decode, [files[i] for i in chunks[number + 1]])
            good = [i for i, result in enumerate(decoded) if not isinstance(result, str)]
            for row, result in zip(chunk.tolist(), decoded):
                if isinstance(result, str):
                    skipped.append((files[row], result))
                    relative, size, mtime = generation.rows[row]
                    unreadable[relative] = (size, mtime, result)
            if good:
                pixels = torch.from_numpy(np.stack([decoded[i][0] for i in good])).permute(0, 3, 1, 2)
                features = embed(backbone, pixels, mean=model.mean, std=model.std, batch_size=len(good),
                                 device=device)
                generation.write(chunk[good], features.numpy(), np.stack([decoded[i][1] for i in good]))
            done += len(chunk)
            if progress is not None:
                progress(done, total, done / max(time.perf_counter() - started, 1e-9))


def embed_image_file(model: EvalModel, path: str, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """One image from anywhere -> (feature (D,), thumbnail (64, 64, 3) uint8); DataError if unreadable."""
    try:
        pixels, thumbnail = decode_image_and_thumbnail(os.path.expanduser(path), model.image_size, THUMBNAIL_SIZE)
    except UnreadableImage as error:
        raise DataError(f"cannot read {path}: {error}") from None
    device = resolve_device(device)
    backbone = model.backbone if device.type == "cpu" else copy.deepcopy(model.backbone).to(device)
    features = embed(backbone, torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0), mean=model.mean,
                     std=model.std, device=device)
    return features[0].numpy(), thumbnail
