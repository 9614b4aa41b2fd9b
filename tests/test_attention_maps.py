"""A ViT's class-token attention on any image: the engine's maps for an image file, and the
Neighbours view drawing them for a query from the folder and from outside it."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from app.widgets.neighbours_view import NeighboursView  # noqa: E402
from ssl_engine.data import generate_shapes  # noqa: E402
from ssl_engine.errors import DataError  # noqa: E402
from ssl_engine.eval.attention import has_attention, image_attention  # noqa: E402
from ssl_engine.eval.embedded import EmbeddedFolders  # noqa: E402
from ssl_engine.eval.folder_embedding import embed_folder  # noqa: E402
from ssl_engine.eval.model_source import random_init_model  # noqa: E402
from ssl_engine.eval.session import EvaluationSession  # noqa: E402
from tests.helpers import save_image_set  # noqa: E402


@pytest.fixture(scope="module")
def vit():
    return random_init_model(backbone="vit_tiny", image_size=32, seed=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention") / "shapes"
    save_image_set(generate_shapes(12, 32, seed=3), root)
    return root


def test_maps_of_an_image_file_are_the_vits_own(vit, folder):
    path = str(sorted(folder.rglob("*.png"))[0])
    pixels, maps = image_attention(vit, path)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    heads, grid = vit.backbone.blocks[-1].attn.heads, 32 // vit.backbone.patch_size
    assert maps.shape == (heads, grid, grid) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.reshape(heads, -1).max(axis=1), 1.0, rtol=1e-6)
    # the same as the class token's row of the last block's attention, rescaled per head
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    normalised = (image - torch.tensor(vit.mean).view(1, 3, 1, 1)) / torch.tensor(vit.std).view(1, 3, 1, 1)
    row = vit.backbone.last_attention(normalised)[0, :, 0, 1:]
    expected = (row / row.max(dim=1, keepdim=True).values).reshape(heads, grid, grid)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_models_without_attention_and_broken_files(vit, tmp_path):
    cnn = random_init_model(backbone="small_cnn")
    assert has_attention(vit) and not has_attention(cnn)
    with pytest.raises(ValueError):
        image_attention(cnn, "anything.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        image_attention(vit, str(broken))


def test_the_neighbours_view_draws_the_querys_attention(qtbot, vit, folder, tmp_path):
    embedding = embed_folder(vit, str(folder), cache_dir="")
    session = EvaluationSession(cache_dir="")
    view = NeighboursView(session)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    session.set_embeddings(EmbeddedFolders(vit, [embedding]), None)
    assert not view.attention_picture.isVisible()
    view.show_neighbours_of(2)
    qtbot.waitUntil(lambda: view.attention_picture.isVisible(), timeout=10000)
    assert "3 heads" in view.attention_caption.text()
    qtbot.wait(50)
    strip, grid = view.attention_picture.geometry(), view.grid.geometry()
    assert strip.height() == 120 and grid.top() > strip.bottom()   # the neighbours sit below, not over it
    # an image from outside the folder gets its maps too
    outside = tmp_path / "outside.png"
    save_image_set(generate_shapes(1, 32, seed=9), tmp_path / "elsewhere", labelled=False)
    os.replace(next((tmp_path / "elsewhere").iterdir()), outside)
    view.open_image(str(outside))
    qtbot.waitUntil(lambda: session.neighbours.query_path == str(outside) and "3 heads" in view.attention_caption.text(),
                    timeout=10000)
    # a CNN has no attention: the strip goes away
    cnn = random_init_model(backbone="small_cnn")
    session.set_embeddings(EmbeddedFolders(cnn, [embed_folder(cnn, str(folder), cache_dir="")]), None)
    view.show_neighbours_of(0)
    qtbot.wait(100)
    assert not view.attention_picture.isVisible()
    view.shutdown()
