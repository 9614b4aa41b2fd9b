"""The evaluation's embedding map driven as a real widget: colouring, rectangle and lasso
selection with the mouse, click, hover preview, thumbnails, PNG export, repeated use."""

import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402

from app.widgets import embedding_map as embedding_map_module  # noqa: E402
from app.widgets import map_preview, map_thumbnails  # noqa: E402
from app.widgets.embedding_map import LASSO, PAN, RECTANGLE, EmbeddingMap  # noqa: E402
from app.widgets.map_selection import points_in_polygon  # noqa: E402
from app.widgets.map_thumbnails import spread_out  # noqa: E402
from ssl_engine.data.shapes import generate_shapes  # noqa: E402
from ssl_engine.errors import DataError, UserError  # noqa: E402

COUNT = 500
# pyqtgraph drops mouse moves closer than 10 ms apart (its mouseRateLimit): space them out.
MOVE_INTERVAL_MS = 15


@pytest.fixture(scope="module")
def shapes_points(tmp_path_factory):
    """500 shapes images written as 128 px PNG files, their 64 px thumbnails, labels, and
    positions clustered by label."""
    folder = tmp_path_factory.mktemp("shapes")
    shapes = generate_shapes(COUNT, image_size=64, seed=0)
    thumbnails = shapes.images.permute(0, 2, 3, 1).numpy().copy()
    labels = shapes.labels.numpy()
    paths = []
    for i, (thumbnail, label) in enumerate(zip(thumbnails, labels)):
        path = folder / shapes.class_names[label] / f"image_{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        # twice the thumbnail's size: a preview of 128 px shows the file was read, not the thumbnail
        Image.fromarray(thumbnail).resize((128, 128), Image.Resampling.NEAREST).save(path)
        paths.append(str(path))
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(10, 2))[labels] * 6 + rng.normal(size=(COUNT, 2))
    return xy, thumbnails, paths, labels, list(shapes.class_names)


def shown_map(qtbot, xy, thumbnails, paths) -> EmbeddingMap:
    view = EmbeddingMap()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    qtbot.waitExposed(view)
    view.set_points(xy, thumbnails, paths)
    qtbot.wait(20)  # the layout settles and the view fits the points
    return view


def on_screen(view: EmbeddingMap, point) -> QPoint:
    """Where data point (x, y) is in the plot's viewport, in whole pixels."""
    return view.plot_widget.mapFromScene(view.view_box.mapViewToScene(QPointF(*point)))


def in_data(view: EmbeddingMap, position: QPoint) -> np.ndarray:
    point = view.view_box.mapSceneToView(view.plot_widget.mapToScene(position))
    return np.array([point.x(), point.y()])


def drag(qtbot, view: EmbeddingMap, positions: list[QPoint], modifier=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = view.plot_widget.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, modifier, positions[0])
    for position in positions[1:]:
        qtbot.wait(MOVE_INTERVAL_MS)
        qtbot.mouseMove(viewport, position)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifier, positions[-1])


def scatter_items(view: EmbeddingMap) -> dict[str, pg.ScatterPlotItem]:
    """The dots, by legend name (the selection and highlight rings have no name)."""
    return {item.name(): item for item in view.plot_item.items
            if isinstance(item, pg.ScatterPlotItem) and item.name() is not None}


def test_colouring_by_label_makes_one_single_brush_scatter_per_group(qtbot, shapes_points):
    xy, thumbnails, paths, labels, names = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    assert list(scatter_items(view)) == [""] and len(scatter_items(view)[""].data) == COUNT
    view.set_colouring(labels, names, "label")
    scatters = scatter_items(view)
    assert sorted(scatters) == sorted(names)
    for value, name in enumerate(names):
        scatter = scatters[name]
        assert len(scatter.data) == (labels == value).sum()
        np.testing.assert_allclose(np.column_stack([scatter.data["x"], scatter.data["y"]]), xy[labels == value])
        assert scatter.opts["brush"].color() == embedding_map_module.group_colour(value, len(names))
        assert all(brush is None for brush in scatter.data["brush"])  # one brush for the item, none per point
    assert [label.text for _, label in view.legend.items] == names
    assert "label" in view.legend_heading.text
    # Unassigned points (-1) form a grey group of their own.
    clusters = np.where(np.arange(COUNT) % 5 == 0, -1, np.arange(COUNT) % 3)
    view.set_colouring(clusters, ["a", "b", "c"], "cluster")
    scatters = scatter_items(view)
    assert sorted(scatters) == ["a", "b", "c", "no group"]
    assert len(scatters["no group"].data) == (clusters == -1).sum()
    assert scatters["no group"].opts["brush"].color().getRgb()[:3] == embedding_map_module.NO_GROUP_COLOUR


def test_rectangle_selection_selects_exactly_the_points_inside(qtbot, shapes_points):
    xy, thumbnails, paths, _, _ = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.mode_buttons[RECTANGLE].click()
    start, end = QPoint(250, 150), QPoint(520, 420)
    low, high = np.minimum(in_data(view, start), in_data(view, end)), np.maximum(in_data(view, start), in_data(view, end))
    expected = np.flatnonzero(((xy >= low) & (xy <= high)).all(axis=1))
    assert 0 < len(expected) < COUNT
    with qtbot.waitSignal(view.selection_changed) as signal:
        drag(qtbot, view, [start, QPoint(400, 300), end])
    np.testing.assert_array_equal(signal.args[0], expected)
    np.testing.assert_array_equal(view.selected(), expected)
    assert view.selection_panel.count_label.text() == f"{len(expected)} selected"
    assert view.selection_panel.grid.model().rowCount() == len(expected)
    assert view.selection_panel.grid.model().index(0).data(Qt.ItemDataRole.ToolTipRole) == paths[expected[0]]
    # Shift adds a second rectangle to the selection.
    start2, end2 = QPoint(600, 300), QPoint(800, 600)
    low2 = np.minimum(in_data(view, start2), in_data(view, end2))
    high2 = np.maximum(in_data(view, start2), in_data(view, end2))
    second = np.flatnonzero(((xy >= low2) & (xy <= high2)).all(axis=1))
    drag(qtbot, view, [start2, QPoint(700, 450), end2], Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(view.selected(), np.union1d(expected, second))
    # Esc clears it.
    with qtbot.waitSignal(view.selection_changed) as signal:
        qtbot.keyClick(view.plot_widget, Qt.Key.Key_Escape)
    assert len(signal.args[0]) == 0 and len(view.selected()) == 0
    assert "Select with" in view.selection_panel.count_label.text() and view.selection_panel.grid.model().rowCount() == 0


def test_lasso_selects_the_points_inside_a_triangle(qtbot, shapes_points):
    xy, thumbnails, paths, _, _ = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.mode_buttons[LASSO].click()
    corners = [QPoint(200, 96), QPoint(744, 248), QPoint(304, 600)]
    # The mouse goes along the three edges, back to where it started; the sides are multiples
    # of 8 pixels, so every position lies exactly on its edge.
    path = [corners[k] + (corners[(k + 1) % 3] - corners[k]) * step / 8 for k in range(3) for step in range(8)]
    drag(qtbot, view, path + [corners[0]])
    triangle = np.array([in_data(view, corner) for corner in corners])
    # Inside a triangle: the same side of all three edges (signs of the cross products agree).
    edges = np.roll(triangle, -1, axis=0) - triangle
    to_points = xy[:, None, :] - triangle[None]
    cross = edges[None, :, 0] * to_points[..., 1] - edges[None, :, 1] * to_points[..., 0]
    expected = np.flatnonzero((cross > 0).all(axis=1) | (cross < 0).all(axis=1))
    assert 20 < len(expected) < COUNT
    np.testing.assert_array_equal(view.selected(), expected)
    rings = view._selection_rings.data
    np.testing.assert_allclose(np.column_stack([rings["x"], rings["y"]]), xy[expected])


def test_points_in_polygon_uses_the_even_odd_rule():
    # A U shape: the notch between its arms is outside.
    u_shape = np.array([(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)])
    points = np.array([(0.5, 2), (2.5, 2), (1.5, 2), (1.5, 0.5), (4, 1), (-1, 1)])
    np.testing.assert_array_equal(points_in_polygon(points, u_shape), [True, True, False, True, False, False])
    assert not points_in_polygon(points, u_shape[:2]).any()  # two vertices enclose nothing


def test_click_on_a_point_and_on_the_grid_emits_its_index(qtbot, shapes_points):
    xy, thumbnails, paths, _, _ = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    viewport = view.plot_widget.viewport()
    screen = np.array([[on_screen(view, p).x(), on_screen(view, p).y()] for p in xy])
    gaps = np.linalg.norm(screen[:, None] - screen[None], axis=2) + np.eye(COUNT) * 1e9
    index = int(np.argmax(gaps.min(axis=1)))  # the most isolated point: nothing else near the click
    with qtbot.waitSignal(view.point_clicked) as signal:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=on_screen(view, xy[index]) + QPoint(2, -1))
    assert signal.args == [index]
    with qtbot.assertNotEmitted(view.point_clicked):
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=QPoint(3, 3))  # a corner, far from any point
    view._set_selection(np.array([7, 42, 99]))
    grid = view.selection_panel.grid
    with qtbot.waitSignal(view.point_clicked) as signal:
        qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.visualRect(grid.model().index(1)).center())
    assert signal.args == [42]


def test_hover_shows_the_file_larger_with_its_path_inside_the_map(qtbot, shapes_points):
    xy, thumbnails, paths, labels, names = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.set_colouring(labels, names, "label")
    qtbot.wait(20)  # the legend takes its place beside the map, which fits the points again
    viewport = view.plot_widget.viewport()
    index = int(np.argmax(xy[:, 0] + xy[:, 1]))  # the top right corner: the preview must turn inwards
    qtbot.mouseMove(viewport, on_screen(view, xy[index]))
    qtbot.waitUntil(view.preview.isVisible)
    assert view.hovered_index == index
    caption = view.preview.caption.text()
    assert os.path.basename(paths[index]) in caption and f"label: {names[labels[index]]}" in caption
    assert view.preview.image.pixmap().width() == 128  # the 128 px file, not the 64 px thumbnail
    assert view.plot_widget.rect().contains(view.preview.geometry())
    qtbot.wait(MOVE_INTERVAL_MS)
    qtbot.mouseMove(viewport, QPoint(3, 3))
    qtbot.waitUntil(lambda: not view.preview.isVisible())
    assert view.hovered_index is None
    # A file gone since it was embedded: its thumbnail stands in, enlarged with crisp pixels.
    other = int(np.argmin(xy[:, 0]))
    os.rename(paths[other], paths[other] + ".moved")
    try:
        qtbot.wait(MOVE_INTERVAL_MS)
        qtbot.mouseMove(viewport, on_screen(view, xy[other]))
        qtbot.waitUntil(view.preview.isVisible)
        assert view.hovered_index == other
        assert view.preview.image.pixmap().width() == 64 * (map_preview.PREVIEW_PIXELS // 64)
        qtbot.mouseMove(view.selection_panel.grid.viewport(), QPoint(20, 20))  # off the map: the preview goes
        qtbot.waitUntil(lambda: not view.preview.isVisible())
    finally:
        os.rename(paths[other] + ".moved", paths[other])


def test_thumbnails_draw_a_capped_spread_out_subset_and_zooming_reveals_more(qtbot, shapes_points, tmp_path,
                                                                             monkeypatch):
    xy, thumbnails, paths, _, _ = shapes_points
    stored = np.lib.format.open_memmap(tmp_path / "thumbnails.npy", mode="w+", dtype=np.uint8, shape=thumbnails.shape)
    stored[:] = thumbnails
    stored.flush()
    memmap = np.load(tmp_path / "thumbnails.npy", mmap_mode="r")  # as the embedding cache hands them over
    view = shown_map(qtbot, xy, memmap, paths)
    monkeypatch.setattr(map_thumbnails, "THUMBNAILS_PER_FRAME", 40)
    view.set_thumbnails_shown(True)
    view.grab()
    layer = view.thumbnail_layer
    assert 0 < len(layer.drawn) <= 40
    assert layer.drawn_side == map_thumbnails.THUMBNAIL_PIXELS
    monkeypatch.setattr(map_thumbnails, "THUMBNAILS_PER_FRAME", 1000)
    view.grab()
    drawn = layer.drawn.copy()
    assert len(drawn) < COUNT  # thinned: they would pile up
    screen = np.array([[on_screen(view, p).x(), on_screen(view, p).y()] for p in xy[drawn]])
    apart = np.abs(screen[:, None] - screen[None]).max(axis=2) + np.eye(len(drawn)) * 1e9
    assert apart.min() >= layer.drawn_side / 2 - 1
    # Zoomed in 3x on the middle: more of the points there get their thumbnail.
    view.view_box.scaleBy((1 / 3, 1 / 3))
    view.grab()
    view_rect = view.view_box.viewRect()
    in_view = lambda indices: [i for i in indices if view_rect.contains(QPointF(*xy[i]))]  # noqa: E731
    assert len(in_view(layer.drawn)) > len(in_view(drawn))
    assert layer.drawn_side > map_thumbnails.THUMBNAIL_PIXELS
    # Hovering a thumbnail away from its point's centre still finds the point.
    index = int(layer.drawn[-1])
    qtbot.mouseMove(view.plot_widget.viewport(), on_screen(view, xy[index]) + QPoint(10, 10))
    qtbot.waitUntil(view.preview.isVisible)
    assert view.hovered_index == index


def test_spread_out_keeps_points_apart_in_priority_order():
    points = np.random.default_rng(1).uniform(0, 100, size=(2000, 2))
    kept = spread_out(points, cell=10.0)
    assert kept[0] == 0 and np.all(np.diff(kept) > 0)
    apart = np.abs(points[kept][:, None] - points[kept][None]).max(axis=2) + np.eye(len(kept)) * 1e9
    assert apart.min() >= 5.0
    # Each pass leaves every point it drops a kept point in the same cell, so after the four
    # passes a kept point lies within four cells of every point: no region is left empty.
    near = np.abs(points[:, None] - points[kept][None]).max(axis=2).min(axis=1)
    assert near.max() < 4 * 10.0


def test_save_png_writes_the_map_at_its_size(qtbot, shapes_points, tmp_path):
    xy, thumbnails, paths, labels, names = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.set_colouring(labels, names, "label")
    view.set_thumbnails_shown(True)
    view.save_png(str(tmp_path / "map.png"))
    with Image.open(tmp_path / "map.png") as picture:
        ratio = view.plot_widget.devicePixelRatioF()
        assert picture.format == "PNG"
        assert picture.size == (round(view.plot_widget.width() * ratio), round(view.plot_widget.height() * ratio))
        assert len(np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0)) > 100  # thumbnails drawn
    with pytest.raises(UserError, match="cannot write"):
        view.save_png(str(tmp_path / "missing folder" / "map.png"))


def test_set_points_again_reuses_items_and_resets_the_state(qtbot, shapes_points):
    xy, thumbnails, paths, labels, names = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.set_colouring(labels, names, "label")
    view.highlight(np.array([1, 2, 3]))
    view._set_selection(np.array([5, 6]))
    scene_items = len(view.plot_item.scene().items())
    with qtbot.waitSignal(view.selection_changed) as signal:  # the old selection means nothing for new points
        view.set_points(xy[:100] * 2, thumbnails[:100], paths[:100])
    assert len(signal.args[0]) == 0
    view.set_colouring(labels[:100] % 3, ["a", "b", "c"], "cluster")
    assert sorted(scatter_items(view)) == ["a", "b", "c"]
    assert sum(isinstance(item, pg.ScatterPlotItem) for item in view.plot_item.items) == 3 + 3  # + the selection's dots and rings, the highlight's rings
    assert len(view.legend.items) == 3 and len(view.highlighted()) == 0 and len(view._highlight_rings.data) == 0
    # Back to ten groups: as many graphics items as the first time, none left over.
    view.set_points(xy, thumbnails, paths)
    view.set_colouring(labels, names, "label")
    assert len(view.plot_item.scene().items()) == scene_items


def test_empty_single_identical_and_non_finite_points(qtbot, shapes_points):
    xy, thumbnails, paths, _, _ = shapes_points
    view = shown_map(qtbot, xy[:0], thumbnails[:0], [])
    view.set_thumbnails_shown(True)
    view.grab()
    assert view.selected().shape == (0,) and view.mode() == PAN
    for points in (xy[:1], np.repeat(xy[:1], 5, axis=0)):  # one point; five in the same place
        view.set_points(points, thumbnails[:len(points)], paths[:len(points)])
        qtbot.wait(20)
        view.grab()
        view_rect = view.view_box.viewRect()
        assert np.isfinite([view_rect.width(), view_rect.height()]).all() and view_rect.contains(QPointF(*xy[0]))
        with qtbot.waitSignal(view.point_clicked) as signal:
            qtbot.mouseClick(view.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=on_screen(view, xy[0]))
        assert 0 <= signal.args[0] < len(points)
    broken = xy.copy()
    broken[[3, 8]] = np.nan
    with pytest.raises(DataError, match="2 of the 500"):
        view.set_points(broken, thumbnails, paths)


def test_a_group_hidden_in_the_legend_cannot_be_selected_or_drawn(qtbot, shapes_points):
    xy, thumbnails, paths, labels, names = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.set_colouring(labels, names, "label")
    view.set_thumbnails_shown(True)
    qtbot.wait(20)
    sample, _ = view.legend.items[0]  # "circle"
    qtbot.mouseClick(view.plot_widget.viewport(), Qt.MouseButton.LeftButton,
                     pos=view.plot_widget.mapFromScene(sample.sceneBoundingRect().center()))
    assert not scatter_items(view)[names[0]].isVisible()
    view.grab()
    assert len(view.thumbnail_layer.drawn) and (labels[view.thumbnail_layer.drawn] != 0).all()
    view.mode_buttons[RECTANGLE].click()
    corner = on_screen(view, xy.max(axis=0))
    drag(qtbot, view, [on_screen(view, xy.min(axis=0)) + QPoint(-5, 5), QPoint(300, 300), corner + QPoint(5, -5)])
    np.testing.assert_array_equal(view.selected(), np.flatnonzero(labels != 0))


def test_a_filter_hides_points_from_drawing_hover_and_selection(qtbot, shapes_points):
    xy, thumbnails, paths, labels, names = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.set_colouring(labels, names, "label")
    view._set_selection(np.array([0, 1, 2, 3]))
    shown = labels == labels[0]
    view.set_filter(shown)
    drawn = sum(len(item.data) for item in scatter_items(view).values())
    assert drawn == shown.sum()
    assert set(scatter_items(view)) == {names[labels[0]]}          # one group left in the legend
    np.testing.assert_array_equal(view.selected(), [i for i in range(4) if shown[i]])  # the hidden left it
    assert f"{shown.sum():,} of {COUNT:,} images shown" in view.selection_panel.count_label.text()
    qtbot.wait(20)  # the view fits the shown points
    view.mode_buttons[RECTANGLE].click()
    # a rectangle round every shown point, which holds hidden ones too
    drag(qtbot, view, [on_screen(view, xy[shown].min(axis=0)) + QPoint(-5, 5), QPoint(300, 300),
                       on_screen(view, xy[shown].max(axis=0)) + QPoint(5, -5)])
    np.testing.assert_array_equal(view.selected(), np.flatnonzero(shown))
    low, high = xy[shown].min(axis=0), xy[shown].max(axis=0)
    inside = np.flatnonzero(~shown & ((xy > low) & (xy < high)).all(axis=1))
    assert len(inside)
    hidden = int(inside[0])  # on screen, under no filter it would be hovered
    assert view._point_at(view.view_box.mapViewToScene(QPointF(*xy[hidden]))) != hidden
    view.highlight(np.array([hidden, int(np.flatnonzero(shown)[0])]))
    assert len(view._highlight_rings.data) == 1   # a hidden neighbour is not ringed
    view.set_filter(None)
    assert len(view._highlight_rings.data) == 2
    qtbot.wait(20)
    assert view._point_at(view.view_box.mapViewToScene(QPointF(*xy[hidden]))) is not None
    view.set_filter(shown)
    # a new colouring keeps the filter; None shows every point again
    view.set_colouring(np.zeros(COUNT, np.int64), ["all"], "one group")
    assert sum(len(item.data) for item in scatter_items(view).values()) == shown.sum()
    view.set_filter(None)
    assert sum(len(item.data) for item in scatter_items(view).values()) == COUNT
    assert "shown" not in view.selection_panel.count_label.text()


def test_the_selection_is_drawn_in_its_own_colour(qtbot, shapes_points):
    xy, thumbnails, paths, labels, names = shapes_points
    view = shown_map(qtbot, xy, thumbnails, paths)
    view.set_colouring(labels, names, "label")
    view._set_selection(np.array([5, 7]))
    dots = view._selection_dots
    np.testing.assert_allclose(np.c_[dots.data["x"], dots.data["y"]], xy[[5, 7]])
    assert dots.opts["brush"].color().getRgb()[:3] == embedding_map_module.SELECTION_RING
    group_colours = {item.opts["brush"].color().getRgb()[:3] for item in scatter_items(view).values()}
    assert embedding_map_module.SELECTION_RING not in group_colours
    # over the groups' dots, under the thumbnails, which the rings still mark
    assert 0 < dots.zValue() < view.thumbnail_layer.zValue() < view._selection_rings.zValue()
    view.clear_selection()
    assert len(view._selection_dots.data) == 0
