"""Reading a real folder of images written with PIL: formats, modes, EXIF, broken files, errors."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_engine.data import load_data, read_folder
from ssl_engine.errors import DataError

SIZE = 16
RED, BLUE = (255, 0, 0), (0, 0, 255)


def halves(width: int, height: int, left=RED, right=BLUE) -> Image.Image:
    """An RGB image whose left half is `left` and right half is `right`."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2:] = right
    return Image.fromarray(pixels)


def pixel(image_set, path_end: str) -> np.ndarray:
    """The (H, W, 3) pixels of the image whose path ends with `path_end`."""
    [index] = [i for i, p in enumerate(image_set.paths) if p.endswith(path_end)]
    return image_set.images[index].permute(1, 2, 0).numpy().astype(int)


@pytest.fixture
def labelled_folder(tmp_path):
    root = tmp_path / "pictures"
    cats, dogs = root / "cats", root / "dogs"
    (cats / "nested" / "deeper").mkdir(parents=True)
    dogs.mkdir()
    (root / ".hidden").mkdir()

    Image.new("RGB", (40, 30), (10, 200, 30)).save(cats / "green.jpg", quality=95)
    Image.new("L", (30, 30), 100).save(cats / "grey.png")
    Image.new("RGB", (30, 30), (200, 50, 50)).save(cats / "red.BMP")
    frames = [Image.new("RGB", (30, 30), RED), Image.new("RGB", (30, 30), (0, 255, 0))]
    frames[0].save(cats / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (30, 30), (20, 40, 240)).save(cats / "nested" / "deeper" / "blue.webp", lossless=True)
    Image.new("RGB", (30, 30), (70, 80, 90)).save(cats / "plain.tiff")
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(cats / "cmyk.jpg", quality=95)

    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 16, 32, 32))  # bottom half index 1 (blue), top half index 0 (red)
    palette.save(dogs / "palette.png", transparency=0)  # index 0 is transparent
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[:, 16:] = (0, 0, 255, 255)  # right half opaque blue, left half fully transparent
    Image.fromarray(rgba, "RGBA").save(dogs / "rgba.png")
    deep = np.full((32, 32), 65535, dtype=np.uint16)
    deep[16:] = 32768
    Image.fromarray(deep).save(dogs / "deep16.png")  # 16-bit greyscale PNG
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    halves(20, 10).save(dogs / "rotated.jpg", exif=exif.tobytes(), quality=95)

    (cats / "zero.png").write_bytes(b"")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="PNG")
    (cats / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (dogs / "text.jpg").write_text("this is not an image\n")

    Image.new("RGB", (30, 30)).save(root / "stray.png")             # beside class folders
    Image.new("RGB", (30, 30)).save(root / ".hidden" / "secret.png")
    Image.new("RGB", (30, 30)).save(cats / ".secret.png")
    (root / "notes.txt").write_text("not an image extension: ignored\n")
    return root


def test_labels_come_from_first_level_folders(labelled_folder):
    images, skipped = read_folder(str(labelled_folder), SIZE)
    assert images.class_names == ["cats", "dogs"]
    names = [p.split("pictures/")[1] for p in images.paths]
    assert names == ["cats/animated.gif", "cats/cmyk.jpg", "cats/green.jpg", "cats/grey.png",
                     "cats/nested/deeper/blue.webp", "cats/plain.tiff", "cats/red.BMP",
                     "dogs/deep16.png", "dogs/palette.png", "dogs/rgba.png", "dogs/rotated.jpg"]
    assert images.labels.tolist() == [0] * 7 + [1] * 4
    assert images.images.shape == (11, 3, SIZE, SIZE) and images.images.dtype == torch.uint8
    assert images.images.is_contiguous() and images.has_labels


def test_broken_and_stray_files_are_skipped_with_reasons(labelled_folder):
    _, skipped = read_folder(str(labelled_folder), SIZE)
    reasons = {path.split("pictures/")[1]: reason for path, reason in skipped}
    assert set(reasons) == {"cats/zero.png", "cats/truncated.png", "dogs/text.jpg", "stray.png"}
    assert "empty" in reasons["cats/zero.png"]
    assert "class folder" in reasons["stray.png"]
    assert all(reason and "\n" not in reason for reason in reasons.values())


def test_modes_are_converted_to_rgb(labelled_folder):
    images, _ = read_folder(str(labelled_folder), SIZE)
    close = lambda got, want, tol=12: np.abs(got - np.array(want)).max() <= tol  # noqa: E731
    assert close(pixel(images, "grey.png"), (100, 100, 100), 0)
    assert close(pixel(images, "green.jpg"), (10, 200, 30))
    assert close(pixel(images, "red.BMP"), (200, 50, 50), 0)
    assert close(pixel(images, "animated.gif"), RED, 0)  # first frame
    assert close(pixel(images, "blue.webp"), (20, 40, 240), 0)
    assert close(pixel(images, "plain.tiff"), (70, 80, 90), 0)
    assert close(pixel(images, "cmyk.jpg"), RED, 20)
    # transparent pixels are composited over white
    palette = pixel(images, "palette.png")
    assert close(palette[:6], (255, 255, 255), 0) and close(palette[-6:], BLUE, 0)
    rgba = pixel(images, "rgba.png")
    assert close(rgba[:, :6], (255, 255, 255), 0) and close(rgba[:, -6:], BLUE, 0)


def test_16_bit_greyscale_is_scaled_not_clipped(labelled_folder):
    deep = pixel(read_folder(str(labelled_folder), SIZE)[0], "deep16.png")
    assert (deep[:6] == 255).all()
    assert (np.abs(deep[-6:] - 128) <= 1).all()


def test_exif_orientation_is_applied(labelled_folder):
    # stored 20x10 with red left and blue right; orientation 6 shows it 10x20, red on top
    rotated = pixel(read_folder(str(labelled_folder), SIZE)[0], "rotated.jpg")
    top, bottom = rotated[:6].mean(axis=(0, 1)), rotated[-6:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_reading_is_deterministic(labelled_folder):
    first, _ = read_folder(str(labelled_folder), SIZE)
    again, _ = read_folder(str(labelled_folder), SIZE)
    assert torch.equal(first.images, again.images) and first.paths == again.paths


def test_shorter_side_is_resized_then_centre_cropped(tmp_path):
    # 60x20: left third red, middle third blue, right third red; the centre crop is all blue
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:] = RED
    pixels[:, 20:40] = BLUE
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    images, skipped = read_folder(str(tmp_path), SIZE)
    assert skipped == [] and images.images.shape == (1, 3, SIZE, SIZE)
    centre = images.images[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(centre[:, 2:-2] - np.array(BLUE)).max() <= 2


def test_load_data_on_labelled_folder_splits_it(labelled_folder):
    splits = load_data(f"folder:{labelled_folder}", SIZE, test_fraction=0.25, seed=0)
    assert splits.name == f"folder:{labelled_folder}"
    assert len(splits.train) + len(splits.test) == 11
    assert set(splits.train.labels.tolist()) == {0, 1} and splits.test.has_labels
    assert len(splits.skipped) == 4


def test_flat_folder_is_unlabelled(tmp_path, monkeypatch):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 24), (i * 50, 0, 0)).save(flat / f"img{i}.png")
    monkeypatch.setenv("HOME", str(tmp_path))
    splits = load_data("folder:~/flat", SIZE)
    assert splits.name == f"folder:{flat}"
    assert splits.test is None and splits.skipped == []
    assert splits.train.labels.tolist() == [-1, -1, -1] and splits.train.class_names == []
    assert not splits.train.has_labels
    assert [p.rsplit("/", 1)[1] for p in splits.train.paths] == ["img0.png", "img1.png", "img2.png"]


def test_missing_and_empty_folders_are_data_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as error:
        read_folder(str(missing), SIZE)
    assert str(missing) in str(error.value)

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as error:
        load_data(f"folder:{empty}", SIZE)
    assert str(empty) in str(error.value) and "no images" in str(error.value)


def test_folder_of_only_broken_images_says_how_many_were_skipped(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("not a jpeg")
    with pytest.raises(DataError) as error:
        read_folder(str(tmp_path), SIZE)
    message = str(error.value)
    assert str(tmp_path) in message and "2" in message and "\n" not in message
