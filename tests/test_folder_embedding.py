"""Streaming folder embedding on real image files: features, labels, skipped files, the on-disk
cache (reuse, changes, cancel and resume) and one outside image, with a really trained model."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from ssl_engine.data import load_digits, read_folder
from ssl_engine.data.folder import decode_image
from ssl_engine.errors import DataError
from ssl_engine.eval import embed
from ssl_engine.eval import folder_embedding as folder_embedding_module
from ssl_engine.eval.folder_embedding import (THUMBNAIL_SIZE, EmbeddingCancelled, default_cache_dir, embed_folder,
                                              embed_image_file)
from ssl_engine.eval.model_source import open_model
from tests.helpers import ODD_FILES, save_image_set, write_shapes_folder


@pytest.fixture(scope="module")
def model(trained_run):
    return open_model(trained_run)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture
def folder(tmp_path, shapes_root):
    """A fresh copy of the shapes folder, for tests that change it."""
    import shutil

    return shutil.copytree(shapes_root, tmp_path / "shapes")


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


@pytest.fixture
def decoded(monkeypatch):
    """The paths decoded by embed_folder from here on."""
    paths = []
    real = folder_embedding_module.decode_image_and_thumbnail

    def counting(path, *args):
        paths.append(path)
        return real(path, *args)

    monkeypatch.setattr(folder_embedding_module, "decode_image_and_thumbnail", counting)
    return paths


def test_features_labels_and_skipped_files_match_the_in_memory_reader(model, shapes_root, cache):
    result = embed_folder(model, str(shapes_root), cache_dir=cache, batch_size=16, device="cpu")
    images, skipped = read_folder(str(shapes_root), model.image_size)
    assert result.paths == images.paths and result.root == str(shapes_root)
    assert all(p.startswith(str(shapes_root)) for p in result.paths)
    expected = embed(model.backbone, images.images, mean=model.mean, std=model.std).numpy()
    assert result.features.shape == (len(images), model.feature_dim) and result.features.dtype == np.float32
    np.testing.assert_allclose(result.features, expected, rtol=1e-4, atol=1e-5)
    assert result.class_names == images.class_names == ["circle", "crescent", "cross", "ellipse", "heart", "ring",
                                                        "semicircle", "square", "star", "triangle"]
    np.testing.assert_array_equal(result.labels, images.labels.numpy())
    assert result.has_labels and result.reused == 0 and result.model_key == model.key
    assert result.skipped == skipped
    assert {os.path.relpath(p, shapes_root) for p, _ in result.skipped} == {"ring/broken.png", "stray.png"}
    for odd in (*ODD_FILES, "star/more/deeper/nested.png"):
        assert str(shapes_root / odd) in result.paths
    assert str(shapes_root / "heart" / ".hidden.png") not in result.paths


def test_thumbnails_are_64_px_centre_crops(model, shapes_root, cache):
    result = embed_folder(model, str(shapes_root), cache_dir=cache, device="cpu")
    assert result.thumbnails.shape == (len(result.paths), THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
    assert result.thumbnails.dtype == np.uint8
    for row in (0, result.paths.index(str(shapes_root / ODD_FILES[1]))):
        expected = decode_image(result.paths[row], THUMBNAIL_SIZE).astype(int)
        assert np.abs(result.thumbnails[row].astype(int) - expected).max() <= 2


def test_reopening_reuses_every_row_without_decoding(model, shapes_root, cache, monkeypatch):
    first = embed_folder(model, str(shapes_root), cache_dir=cache, device="cpu")
    first_features = np.array(first.features)

    def no_decoding(*args):
        raise AssertionError("an unchanged folder must not be decoded again")

    monkeypatch.setattr(folder_embedding_module, "decode_image_and_thumbnail", no_decoding)
    calls = []
    started = time.perf_counter()
    again = embed_folder(model, str(shapes_root), cache_dir=cache, device="cpu", progress=lambda *a: calls.append(a))
    assert time.perf_counter() - started < 1.0
    assert again.reused == len(again.paths) == len(first.paths) and calls == []
    np.testing.assert_array_equal(again.features, first_features)
    np.testing.assert_array_equal(again.thumbnails, first.thumbnails)
    assert again.skipped == first.skipped and again.paths == first.paths
    assert isinstance(again.features, np.memmap) and not again.features.flags.writeable


def test_a_touched_added_or_removed_file_re_embeds_only_that_file(model, folder, cache, decoded):
    full = embed_folder(model, str(folder), cache_dir=cache, batch_size=16, device="cpu")
    count, reference = len(full.paths), np.array(full.features)
    decoded.clear()

    touched, source, removed = (folder / os.path.relpath(full.paths[row], folder) for row in (10, 30, 50))
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))
    progress = []
    result = embed_folder(model, str(folder), cache_dir=cache, device="cpu", progress=lambda *a: progress.append(a))
    assert decoded == [str(touched)] and result.reused == count - 1
    assert [p[:2] for p in progress] == [(1, 1)] and progress[0][2] > 0
    np.testing.assert_allclose(result.features, reference, rtol=1e-4, atol=1e-5)

    decoded.clear()
    added = folder / "cross" / "added.png"
    Image.open(source).save(added)
    result = embed_folder(model, str(folder), cache_dir=cache, device="cpu")
    assert decoded == [str(added)] and len(result.paths) == count + 1 and result.reused == count
    row = result.paths.index(str(added))
    assert result.class_names[result.labels[row]] == "cross"
    np.testing.assert_allclose(result.features[row], reference[30], rtol=1e-4, atol=1e-5)

    decoded.clear()
    removed.unlink()
    result = embed_folder(model, str(folder), cache_dir=cache, device="cpu")
    assert decoded == [] and len(result.paths) == count and result.reused == count
    assert str(removed) not in result.paths
    kept = [full.paths.index(p) for p in result.paths if p in full.paths]
    np.testing.assert_allclose(result.features[[result.paths.index(full.paths[i]) for i in kept]],
                               reference[kept], rtol=1e-4, atol=1e-5)


def test_a_file_that_breaks_is_skipped_and_remembered(model, folder, cache, decoded):
    full = embed_folder(model, str(folder), cache_dir=cache, device="cpu")
    broken = folder / os.path.relpath(full.paths[20], folder)
    broken.write_bytes(b"no longer an image")
    result = embed_folder(model, str(folder), cache_dir=cache, device="cpu")
    assert len(result.paths) == len(full.paths) - 1 == len(result.features) == len(result.thumbnails)
    assert str(broken) not in result.paths and str(broken) in dict(result.skipped)
    decoded.clear()
    again = embed_folder(model, str(folder), cache_dir=cache, device="cpu")
    assert decoded == [] and again.skipped == result.skipped  # known unreadable: not decoded again


def test_cancel_keeps_the_finished_rows_and_the_next_call_resumes(model, folder, cache, decoded):
    polls = []

    def cancel_after_two_chunks():
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(EmbeddingCancelled, match="after 16 of"):
        embed_folder(model, str(folder), cache_dir=cache, batch_size=8, device="cpu",
                     cancelled=cancel_after_two_chunks)
    first_decoded = set(decoded)
    decoded.clear()
    resumed = embed_folder(model, str(folder), cache_dir=cache, batch_size=8, device="cpu")
    assert resumed.reused == 16
    # the first two chunks are reused; the third was decoded ahead but not embedded, so it is again
    broken = str(folder / "ring" / "broken.png")
    assert set(decoded) == set(resumed.paths[16:]) | {broken} and first_decoded >= set(resumed.paths[:16])
    reference = embed_folder(model, str(folder), cache_dir="", device="cpu")
    assert reference.paths == resumed.paths and reference.reused == 0
    np.testing.assert_allclose(resumed.features, reference.features, rtol=1e-4, atol=1e-5)


def test_a_flat_folder_is_unlabelled(model, tmp_path, cache):
    flat = tmp_path / "digits"
    save_image_set(load_digits(16).subset(list(range(12))), flat, labelled=False)
    result = embed_folder(model, str(flat), cache_dir=cache, device="cpu")
    assert len(result.paths) == 12 and result.class_names == [] and not result.has_labels
    assert (result.labels == -1).all() and result.labels.dtype == np.int64


def test_missing_empty_and_unreadable_folders_are_data_errors(model, tmp_path, cache):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"")
    (tmp_path / "broken" / "b.jpg").write_text("not a jpeg")
    for name, message in (("missing", "does not exist"), ("empty", "no images"), ("broken", "all 2 image files")):
        with pytest.raises(DataError, match=message) as error:
            embed_folder(model, str(tmp_path / name), cache_dir=cache, device="cpu")
        assert str(tmp_path / name) in str(error.value) and "\n" not in str(error.value)


def test_the_cache_lives_under_the_model_key_and_can_be_turned_off(model, shapes_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_EXPLORER_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == str(tmp_path / "env-cache")
    embed_folder(model, str(shapes_root), device="cpu")
    [entry] = (tmp_path / "env-cache" / model.key[:16]).iterdir()
    assert {p.name for p in entry.iterdir()} == {"features.npy", "thumbnails.npy", "index.json"}

    monkeypatch.setattr(folder_embedding_module.tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    uncached = embed_folder(model, str(shapes_root), cache_dir="", device="cpu")
    assert uncached.reused == 0 and len(uncached.features) == len(uncached.paths)
    assert list((tmp_path / "scratch").iterdir()) == []  # nothing left behind


def test_an_outside_image_is_embedded_like_the_folder_images(model, shapes_root, cache, tmp_path):
    result = embed_folder(model, str(shapes_root), cache_dir=cache, device="cpu")
    row = 5
    feature, thumbnail = embed_image_file(model, result.paths[row], device="cpu")
    assert feature.shape == (model.feature_dim,) and thumbnail.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
    np.testing.assert_allclose(feature, result.features[row], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(thumbnail, result.thumbnails[row])
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(DataError, match="bad.png"):
        embed_image_file(model, str(tmp_path / "bad.png"), device="cpu")
