"""Tags on a folder's images, stored beside the embedding cache: real files in real folders."""

import json

import numpy as np
import pytest

from ssl_engine.errors import UserError
from ssl_engine.eval.tags import FolderTags, ImageTags, checked_tag, tags_file


def two_folders(tmp_path):
    """Two folders of empty image files (tags never read the images), and their rows."""
    roots, paths, folder_of = [], [], []
    for index, name in enumerate(("photos", "scans")):
        root = tmp_path / name
        (root / "sub").mkdir(parents=True)
        for i in range(3):
            path = root / ("sub" if i == 2 else "") / f"{name}_{i}.png"
            path.write_bytes(b"")
            paths.append(str(path))
            folder_of.append(index)
        roots.append(str(root))
    return roots, paths, np.array(folder_of)


def test_tags_are_saved_per_folder_and_read_back_by_a_new_session(tmp_path):
    roots, paths, folder_of = two_folders(tmp_path)
    cache = str(tmp_path / "cache")
    tags = ImageTags.load(roots, paths, folder_of, cache)
    assert tags.names() == [] and len(tags.rows("blurry")) == 0
    assert tags.add("  blurry  ", np.array([1, 2, 4])) == 3
    assert tags.add("blurry", np.array([2, 5])) == 1     # 2 already carried it
    assert tags.add("Check", np.array([0])) == 1
    # each folder's file lists its own images, relative to it, with "/" between folders
    photos = json.loads(tags_file(roots[0], cache).read_text())
    assert photos["tags"] == {"Check": ["photos_0.png"], "blurry": ["photos_1.png", "sub/photos_2.png"]}
    scans = json.loads(tags_file(roots[1], cache).read_text())
    assert scans["tags"] == {"blurry": ["scans_1.png", "sub/scans_2.png"]}

    again = ImageTags.load(roots, paths, folder_of, cache)
    assert again.names() == ["blurry", "Check"]
    np.testing.assert_array_equal(again.rows("blurry"), [1, 2, 4, 5])
    groups, names = again.groups()
    np.testing.assert_array_equal(groups, [1, 0, 0, -1, 0, 0])   # row 0: its only tag, "Check"
    assert again.remove("blurry", np.array([1, 4, 0])) == 2
    np.testing.assert_array_equal(ImageTags.load(roots, paths, folder_of, cache).rows("blurry"), [2, 5])
    # the same folder seen as part of another selection of folders keeps its tags
    alone = ImageTags.load(roots[1:], paths[3:], np.zeros(3, np.int64), cache)
    np.testing.assert_array_equal(alone.rows("blurry"), [2])


def test_removing_every_image_of_a_tag_removes_the_tag(tmp_path):
    roots, paths, folder_of = two_folders(tmp_path)
    tags = ImageTags.load(roots, paths, folder_of, str(tmp_path))
    tags.add("odd", np.array([3]))
    assert tags.remove("odd", np.array([3])) == 1
    assert tags.names() == [] and ImageTags.load(roots, paths, folder_of, str(tmp_path)).names() == []
    assert tags.remove("never there", np.array([0, 1])) == 0


def test_a_broken_tags_file_is_one_message_and_is_never_overwritten(tmp_path):
    roots, paths, folder_of = two_folders(tmp_path)
    path = tags_file(roots[0], str(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    with pytest.raises(UserError, match="cannot read the tags of .*photos.*move that file away"):
        FolderTags(roots[0], str(tmp_path))
    assert path.read_text() == "{ not json"
    path.write_text(json.dumps({"format": 99, "tags": {}}))
    with pytest.raises(UserError, match="unknown format"):
        FolderTags(roots[0], str(tmp_path))


def test_a_tag_needs_a_short_name(tmp_path):
    assert checked_tag("  two   words ") == "two words"
    with pytest.raises(UserError, match="needs a name"):
        checked_tag("   ")
    with pytest.raises(UserError, match="at most 40"):
        checked_tag("x" * 41)
    roots, paths, folder_of = two_folders(tmp_path)
    with pytest.raises(UserError, match="needs a name"):
        ImageTags.load(roots, paths, folder_of, str(tmp_path)).add("", np.array([0]))


def test_an_unwritable_cache_folder_is_one_message(tmp_path):
    roots, paths, folder_of = two_folders(tmp_path)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    tags = ImageTags.load(roots, paths, folder_of, str(blocker))
    with pytest.raises(UserError, match="cannot save the tags"):
        tags.add("odd", np.array([0]))
