"""Tests of instance labels as the training target: separation borders, the weight map of instance labels, the K-class
balance and touching cells from a binary EM label. Every expected value is computed here, independently: borders by
a pixel-by-pixel loop over the definition, weight maps by one full EDT per object, nearest cells by brute force over
all pixel pairs."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import real_data_root, synthetic_em
from scipy import ndimage

from unet_repro.cells import label_cells
from unet_repro.instances import separation_borders, sequential_objects, touching_cells
from unet_repro.weightmap import border_weight_map, border_weight_map_direct, class_balance_weights

NEIGHBOURS_8 = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
DTYPES = [np.uint8, np.uint16, np.int32, np.uint32]


# ---------------------------------------------------------------------------------------------------------------------
# Generated objects and the direct computations

def random_ids(n: int, dtype, rng: np.random.Generator) -> np.ndarray:
    """n distinct nonzero ids of `dtype`, spread over its range and including its largest value."""
    top = min(np.iinfo(dtype).max, 2**32 - 1)
    ids = {int(top)}
    while len(ids) < n:
        ids.add(int(rng.integers(1, top, endpoint=True)))
    return rng.permutation(np.array(sorted(ids), dtype=np.int64)).astype(dtype)


def tiled_squares(rows: int, cols: int, side: int, dtype, seed: int, margin: int = 0) -> np.ndarray:
    """rows x cols squares of side `side` touching edge to edge (and at corners); with margin 0 they fill the image,
    so objects lie on all four image borders."""
    rng = np.random.default_rng(seed)
    ids = random_ids(rows * cols, dtype, rng).reshape(rows, cols)
    labels = np.zeros((rows * side + 2 * margin, cols * side + 2 * margin), dtype)
    labels[margin:margin + rows * side, margin:margin + cols * side] = np.kron(ids, np.ones((side, side), dtype))
    return labels


def touching_discs(shape: tuple[int, int], n: int, dtype, seed: int, radii=(3, 9)) -> np.ndarray:
    """n discs painted one over the other (a later disc covers an earlier one): curved contacts, slivers, discs cut
    by the image border, some objects left in pieces."""
    rng = np.random.default_rng(seed)
    ids = random_ids(n, dtype, rng)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype)
    centres = [(rng.integers(0, shape[0]), rng.integers(0, shape[1]))]
    for i in ids:
        r = rng.integers(*radii, endpoint=True)
        if len(centres) > 1 and rng.random() < 0.2:   # now and then a disc anywhere, else one beside an earlier one
            cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        else:
            py, px = centres[rng.integers(len(centres))]
            cy, cx = np.clip([py + rng.integers(-r, r + 1), px + rng.integers(-r, r + 1)], 0, np.array(shape) - 1)
        centres.append((cy, cx))
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return labels


def touching_pixels(labels: np.ndarray) -> dict[tuple[int, int], set[int]]:
    """For each object pixel, the values of the other objects among its 8 neighbours (pixels touching none left out)."""
    out: dict[tuple[int, int], set[int]] = {}
    height, width = labels.shape
    for r in range(height):
        for c in range(width):
            v = int(labels[r, c])
            if v == 0:
                continue
            others = {int(labels[r + dr, c + dc]) for dr, dc in NEIGHBOURS_8
                      if 0 <= r + dr < height and 0 <= c + dc < width} - {0, v}
            if others:
                out[(r, c)] = others
    return out


def width_rule(touching: dict[tuple[int, int], set[int]], labels: np.ndarray, width: int) -> set[tuple[int, int]]:
    """The pixels the width rule alone makes background (before the small-object rule)."""
    if width == 1:   # the pixel gives way to a touching object with a smaller value
        return {p for p, others in touching.items() if min(others) < labels[p]}
    return set(touching)   # width 2: every touching pixel


def small_objects(labels: np.ndarray, width: int) -> set[int]:
    """The objects all of whose pixels the width rule would make background."""
    rule = width_rule(touching_pixels(labels), labels, width)
    return {int(v) for v in np.unique(labels) if v != 0 and all((int(r), int(c)) in rule
                                                                  for r, c in np.argwhere(labels == v))}


def direct_borders(labels: np.ndarray, width: int) -> np.ndarray:
    """The module docstring's definition, pixel by pixel: which pixels become background."""
    touching = touching_pixels(labels)
    rule = width_rule(touching, labels, width)
    pixels: dict[int, set] = {}
    for p in zip(*np.nonzero(labels)):
        pixels.setdefault(int(labels[p]), set()).add((int(p[0]), int(p[1])))
    small = {v for v, pix in pixels.items() if pix <= rule}
    small_pixels = set().union(*(pixels[v] for v in small)) if small else set()
    gives_way = {p for p, others in touching.items() if others & small and int(labels[p]) not in small}
    widened = (rule | gives_way) - small_pixels
    stuck = {v for v, pix in pixels.items() if v not in small and pix <= widened}
    final = {p for p in widened if int(labels[p]) not in stuck} | {p for p in rule if int(labels[p]) in stuck}
    out = np.zeros(labels.shape, bool)
    for p in final:
        out[p] = True
    return out


def direct_weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Eq. 2 with each nonzero value one object: one full EDT per value, sorted, the two smallest; w_c from the
    nonzero / zero pixel counts; the border term on zero pixels only."""
    fg = labels != 0
    n_fg, n_bg = int(fg.sum()), int((~fg).sum())
    if n_fg and n_bg:
        w = np.where(fg, max(n_fg, n_bg) / n_fg, max(n_fg, n_bg) / n_bg)
    else:
        w = np.ones(labels.shape)
    values = [v for v in np.unique(labels) if v != 0]
    if len(values) >= 2:
        dists = np.sort(np.stack([ndimage.distance_transform_edt(labels != v) for v in values], axis=-1), axis=-1)
        border = w0 * np.exp(-((dists[..., 0] + dists[..., 1]) ** 2) / (2 * sigma**2))
        w = w + np.where(fg, 0.0, border)
    return w.astype(np.float32)


def eight_adjacent_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different objects that have 8-neighbouring pixels."""
    return {tuple(sorted((int(labels[p]), o))) for p, others in touching_pixels(labels).items() for o in others}


# ---------------------------------------------------------------------------------------------------------------------
# Separation borders

def check_borders(labels: np.ndarray, width: int) -> np.ndarray:
    out = separation_borders(labels, width)
    assert out.dtype == labels.dtype and out.shape == labels.shape
    np.testing.assert_array_equal(out == 0, direct_borders(labels, width) | (labels == 0))
    np.testing.assert_array_equal(out[out != 0], labels[out != 0])                       # values kept
    # Borders only where objects touch: every pixel that changed touches another object.
    touching = touching_pixels(labels)
    assert all(p in touching for p in zip(*map(lambda a: a.tolist(), np.nonzero(out != labels))))
    assert set(np.unique(out)) - {0} == set(np.unique(labels)) - {0}                       # no object vanished
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("rows, cols, side, margin", [(1, 1, 6, 2), (1, 2, 4, 0), (3, 3, 5, 1), (10, 20, 3, 0)])
def test_borders_between_tiled_squares(dtype, width: int, rows: int, cols: int, side: int, margin: int) -> None:
    if rows * cols > np.iinfo(dtype).max:
        pytest.skip("more objects than ids")
    labels = tiled_squares(rows, cols, side, dtype, seed=rows * cols, margin=margin)
    out = check_borders(labels, width)
    assert not eight_adjacent_pairs(out)                  # all separated, under 4- and 8-connectivity
    if rows * cols == 1:
        np.testing.assert_array_equal(out, labels)        # one object: nothing touches
    else:
        assert (out != labels).any()
        if width == 2:   # symmetric: every square loses a pixel along each side where it meets a neighbour
            assert all((out[labels == v] == 0).sum() >= side - 1 for v in np.unique(labels) if v != 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("n, shape, seed", [(2, (20, 20), 0), (12, (40, 40), 1), (200, (110, 110), 2)])
def test_borders_between_touching_discs(dtype, width: int, n: int, shape, seed: int) -> None:
    labels = touching_discs(shape, n, dtype, seed)
    assert eight_adjacent_pairs(labels)                   # they do touch
    out = check_borders(labels, width)
    # Only where an object is too small for the border rule (all its pixels would go) may two objects still touch.
    small = small_objects(labels, width)
    assert all(a in small or b in small for a, b in eight_adjacent_pairs(out))


def test_width_1_takes_one_pixel_from_the_larger_value() -> None:
    labels = np.zeros((6, 8), np.uint16)
    labels[1:5, 1:4] = 700
    labels[1:5, 4:7] = 3
    expected = labels.copy()
    expected[1:5, 3] = 0                                 # 700 > 3: the left square gives up its right column
    np.testing.assert_array_equal(separation_borders(labels, 1), expected)
    expected[1:5, 4] = 0                                 # width 2: both columns along the contact
    np.testing.assert_array_equal(separation_borders(labels, 2), expected)


def test_corner_contact() -> None:
    labels = np.zeros((5, 5), np.uint8)
    labels[0:2, 0:2] = 1
    labels[2:4, 2:4] = 2
    expected = labels.copy()
    expected[2, 2] = 0                                   # only the corner pixel of the larger value
    np.testing.assert_array_equal(separation_borders(labels, 1), expected)
    expected[1, 1] = 0
    np.testing.assert_array_equal(separation_borders(labels, 2), expected)


def test_objects_apart_are_unchanged() -> None:
    labels = np.zeros((9, 9), np.uint16)
    labels[0:4, 0:4] = 5
    labels[0:4, 5:9] = 9                                 # one background column between them: no contact
    labels[5:9, 0:9] = 2                                 # one background row
    for width in (1, 2):
        np.testing.assert_array_equal(separation_borders(labels, width), labels)
    zeros = np.zeros((4, 4), np.uint8)
    np.testing.assert_array_equal(separation_borders(zeros), zeros)


def test_one_pixel_object_is_kept_and_its_neighbour_gives_way() -> None:
    labels = np.zeros((5, 6), np.uint8)
    labels[0:3, 0:3] = 1
    labels[1, 3] = 2                                     # a 1-pixel object right of object 1 (it would give way)
    for width in (1, 2):
        out = separation_borders(labels, width)
        assert out[1, 3] == 2                            # kept
        expected = labels.copy()
        expected[0:3, 2] = 0                             # instead object 1 loses the three pixels that touch it
        np.testing.assert_array_equal(out, expected)


def test_two_touching_one_pixel_objects_both_stay() -> None:
    labels = np.zeros((3, 4), np.uint16)
    labels[1, 1], labels[1, 2] = 40, 41
    for width in (1, 2):
        np.testing.assert_array_equal(separation_borders(labels, width), labels)   # documented: they stay touching


def test_two_pixel_wide_object_between_two_neighbours() -> None:
    labels = np.zeros((6, 9), np.int32)
    labels[:, 0:3] = 1
    labels[:, 3:5] = 2                                   # 2 px wide: width 2 would take both its columns
    labels[:, 5:9] = 3
    out = separation_borders(labels, 2)
    expected = labels.copy()
    expected[:, 2] = 0                                   # it stays whole; both neighbours give way
    expected[:, 5] = 0
    np.testing.assert_array_equal(out, expected)
    expected = labels.copy()                             # width 1: object 2 gives one column to 1, 3 one to 2
    expected[:, 3] = expected[:, 5] = 0
    np.testing.assert_array_equal(separation_borders(labels, 1), expected)


def test_thin_line_along_a_smaller_value_is_kept() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[0:3, :] = 1
    labels[3, :] = 7                                     # 1 px wide line under object 1: width 1 would erase it
    out = separation_borders(labels, 1)
    expected = labels.copy()
    expected[2, :] = 0
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4), bool), np.zeros((2, 4, 4), np.uint8)])
def test_borders_reject_what_is_no_instance_label(bad) -> None:
    with pytest.raises(ValueError, match="instance labels"):
        separation_borders(bad)


def test_borders_reject_other_widths() -> None:
    with pytest.raises(ValueError, match="width"):
        separation_borders(np.zeros((4, 4), np.uint8), width=3)


def test_sequential_objects_keeps_each_value_one_object() -> None:
    labels = np.array([[0, 70000, 70000, 0], [5, 0, 0, 70000], [0, 0, 2**32 - 1, 0]], np.uint32)
    objects, n = sequential_objects(labels)
    expected = np.array([[0, 2, 2, 0], [1, 0, 0, 2], [0, 0, 3, 0]], np.int32)
    assert n == 3 and objects.dtype == np.int32
    np.testing.assert_array_equal(objects, expected)
    small, n_small = sequential_objects(labels.astype(np.int64) % 11)   # values 7, 5, 3: the lookup-table path
    assert n_small == 3
    np.testing.assert_array_equal(small, np.array([[0, 3, 3, 0], [2, 0, 0, 3], [0, 0, 1, 0]], np.int32))


# ---------------------------------------------------------------------------------------------------------------------
# Weight map of instance labels

BOTH = pytest.mark.parametrize("weight_map", [border_weight_map, border_weight_map_direct], ids=["fast", "direct"])


@BOTH
@pytest.mark.parametrize("width", [None, 1, 2])
@pytest.mark.parametrize("case", ["squares-u8", "squares-u16", "squares-i32-200", "discs-u16-200", "discs-u32-30",
                                  "discs-u8-3"])
def test_instance_weight_map_matches_direct(weight_map, case: str, width) -> None:
    original = {
        "squares-u8": lambda: tiled_squares(4, 5, 7, np.uint8, seed=3, margin=4),
        "squares-u16": lambda: tiled_squares(6, 6, 5, np.uint16, seed=4, margin=0),
        "squares-i32-200": lambda: tiled_squares(10, 20, 4, np.int32, seed=8, margin=3),
        "discs-u16-200": lambda: touching_discs((100, 100), 200, np.uint16, seed=5),
        "discs-u32-30": lambda: touching_discs((64, 80), 30, np.uint32, seed=6, radii=(4, 12)),
        "discs-u8-3": lambda: touching_discs((40, 40), 3, np.uint8, seed=7, radii=(6, 10)),
    }[case]()
    labels = original if width is None else separation_borders(original, width)
    w = weight_map(labels, instances=True)
    assert w.dtype == np.float32 and w.shape == labels.shape
    expected = direct_weight_map(labels)
    np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-5)
    if width is not None and eight_adjacent_pairs(original):
        fg = labels != 0
        n_fg = fg.sum()
        w_c = np.where(fg, max(n_fg, fg.size - n_fg) / n_fg, max(n_fg, fg.size - n_fg) / (fg.size - n_fg))
        assert (expected - w_c).max() > 5.0             # the border term is really there


@BOTH
@pytest.mark.parametrize("width, d_sum", [(1, 2.0), (2, 3.0)])
def test_border_between_two_touching_cells_gets_about_w0_plus_wc(weight_map, width: int, d_sum: float) -> None:
    labels = np.zeros((30, 40), np.uint16)
    labels[5:25, 4:20] = 1000
    labels[5:25, 20:36] = 7
    bordered = separation_borders(labels, width)
    w0, sigma = 10.0, 5.0
    w = weight_map(bordered, w0=w0, sigma=sigma, instances=True)
    fg = bordered != 0
    w_c_bg = fg.sum() / (~fg).sum() if (~fg).sum() < fg.sum() else 1.0
    # On the border, away from its ends, d1 + d2 = 2 (width 1: one pixel to either side) or 3 (width 2).
    expected = w_c_bg + w0 * math.exp(-(d_sum**2) / (2 * sigma**2))
    border_cols = [19] if width == 1 else [19, 20]
    for col in border_cols:
        np.testing.assert_allclose(w[8:22, col], expected, rtol=0, atol=1e-5)
    assert expected > (0.9 if width == 1 else 0.8) * w0 + w_c_bg
    # Without the border the two cells touch: no background between them, no border term there.
    touching = weight_map(labels, w0=w0, sigma=sigma, instances=True)
    assert touching[8:22, 19:21].max() < 2.0


@BOTH
def test_binary_mask_through_instances_is_bit_identical(weight_map) -> None:
    rng = np.random.default_rng(0)
    masks = [synthetic_em()[1][k] > 0 for k in range(2)]
    masks.append(ndimage.gaussian_filter(rng.standard_normal((90, 120)), 2.0) > 0.1)
    for mask in masks:
        for connectivity in (4, 8):
            cells = label_cells(mask, connectivity)
            assert cells.max() >= 2                      # a border term to compare
            expected = weight_map(mask, connectivity=connectivity)
            np.testing.assert_array_equal(weight_map(cells, instances=True), expected)
            # Any other ids for the same objects: the same map (the values only name the objects).
            ids = random_ids(int(cells.max()), np.uint16, rng)
            renamed = np.where(cells > 0, ids[cells - 1], 0).astype(np.uint16)
            np.testing.assert_array_equal(weight_map(renamed, instances=True), expected)


@BOTH
def test_no_object_and_one_object_get_no_border_term(weight_map) -> None:
    zeros = np.zeros((20, 30), np.uint16)
    np.testing.assert_array_equal(weight_map(zeros, instances=True), np.ones((20, 30), np.float32))
    one = np.zeros((40, 40), np.uint16)
    one[10:30, 10:30] = 513
    np.testing.assert_array_equal(weight_map(one, instances=True), np.where(one > 0, 3.0, 1.0).astype(np.float32))
    # One object in two pieces is still one object: no border term between the pieces (as two cells it gets one).
    pieces = np.zeros((30, 40), np.int32)
    pieces[10:20, 5:15] = pieces[10:20, 20:30] = 9
    n_fg = int((pieces > 0).sum())
    w_c = np.where(pieces > 0, (pieces.size - n_fg) / n_fg, 1.0).astype(np.float32)
    np.testing.assert_array_equal(weight_map(pieces, instances=True), w_c)
    assert weight_map(pieces > 0)[15, 17] > 5.0


@BOTH
def test_instances_reject_connectivity_and_non_integer_labels(weight_map) -> None:
    labels = tiled_squares(2, 2, 4, np.uint8, seed=0, margin=1)
    with pytest.raises(ValueError, match="connectivity"):
        weight_map(labels, connectivity=4, instances=True)
    for bad in (labels.astype(np.float32), labels > 0):
        with pytest.raises(ValueError, match="instance labels"):
            weight_map(bad, instances=True)


# ---------------------------------------------------------------------------------------------------------------------
# Class balance for K classes

def test_class_balance_of_three_classes() -> None:
    target = np.zeros((10, 10), np.uint8)
    target[:, :2] = 1          # 20 pixels
    target[:, 2:3] = 2         # 10 pixels; class 0: 70 pixels
    expected = np.choose(target, [1.0, 70 / 20, 70 / 10])
    np.testing.assert_array_equal(class_balance_weights(target), expected)
    target[:, 2:3] = 3         # class 2 absent, class 3 present: only the classes present count
    np.testing.assert_array_equal(class_balance_weights(target), np.choose(target, [1.0, 3.5, 0.0, 7.0]))


def test_class_balance_of_one_class_is_one() -> None:
    for target in (np.full((5, 7), 2, np.int64), np.zeros((5, 7), bool)):
        np.testing.assert_array_equal(class_balance_weights(target), np.ones((5, 7)))


def test_class_balance_of_two_classes_is_the_weight_maps() -> None:
    mask = synthetic_em()[1][0] > 0
    n_fg = int(mask.sum())
    n_max = max(n_fg, mask.size - n_fg)
    expected = np.where(mask, n_max / n_fg, n_max / (mask.size - n_fg))
    for target in (mask, mask.astype(np.uint8), mask.astype(np.int32)):
        np.testing.assert_array_equal(class_balance_weights(target), expected)
    np.testing.assert_array_equal(border_weight_map(mask, w0=0.0), expected.astype(np.float32))


@pytest.mark.parametrize("bad", [np.full((3, 3), -1, np.int16), np.full((3, 3), 70000, np.int32),
                                 np.zeros((3, 3), np.float64), np.zeros((2, 3, 3), np.uint8)])
def test_class_balance_rejects_what_is_no_class_target(bad) -> None:
    with pytest.raises(ValueError, match="target"):
        class_balance_weights(bad)


# ---------------------------------------------------------------------------------------------------------------------
# Touching cells from a binary EM label

def nearest_cell_brute_force(cells: np.ndarray) -> np.ndarray:
    """Every zero pixel gets the label of the cell pixel at the smallest squared distance, the smallest label among
    equally near ones: over all (membrane pixel, cell pixel) pairs."""
    out = cells.copy()
    cell_rc = np.argwhere(cells > 0)
    cell_lab = cells[cells > 0]             # the same (raster) order as argwhere
    order = np.argsort(cell_lab, kind="stable")
    cell_rc, cell_lab = cell_rc[order], cell_lab[order]
    for r, c in np.argwhere(cells == 0):
        sq = (cell_rc[:, 0] - r) ** 2 + (cell_rc[:, 1] - c) ** 2
        out[r, c] = cell_lab[np.argmin(sq)]  # argmin: the first minimum, i.e. the smallest label
    return out


def test_touching_cells_hand_made() -> None:
    mask = np.ones((5, 7), bool)
    mask[:, 3] = False
    mask[2, :] = False
    expected = np.array([[1, 1, 1, 1, 2, 2, 2],     # (0, 3) is 1 from cells 1 and 2: the smaller label
                         [1, 1, 1, 1, 2, 2, 2],
                         [1, 1, 1, 1, 2, 2, 2],     # the centre is equally near all four: 1
                         [3, 3, 3, 3, 4, 4, 4],
                         [3, 3, 3, 3, 4, 4, 4]], np.int32)
    out = touching_cells(mask)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_touching_cells_nearest_not_first() -> None:
    # A thick membrane: column 4 is 1 from cell 2 but 2 from cell 1, so it goes to 2, though 1 < 2.
    mask = np.zeros((3, 8), np.uint8)
    mask[:, :2] = 255
    mask[:, 5:] = 255
    out = touching_cells(mask)
    np.testing.assert_array_equal(out, np.tile([1, 1, 1, 1, 2, 2, 2, 2], (3, 1)))   # column 3: 2 from both: 1


@pytest.mark.parametrize("k", range(2))
@pytest.mark.parametrize("connectivity", [4, 8])
def test_touching_cells_match_brute_force_on_em_labels(k: int, connectivity: int) -> None:
    mask = synthetic_em(n=2, size=64, cells=10, seed=3)[1][k] > 0
    cells = label_cells(mask, connectivity)
    out = touching_cells(mask, connectivity)
    np.testing.assert_array_equal(out, nearest_cell_brute_force(cells))
    assert not (out == 0).any() and out.max() == cells.max()
    np.testing.assert_array_equal(out[cells > 0], cells[cells > 0])            # cells keep their pixels
    bordered = separation_borders(out)                                          # then the paper's borders
    assert not eight_adjacent_pairs(bordered) and set(np.unique(bordered)) == set(np.unique(out)) | {0}


def test_touching_cells_without_cells_or_membrane() -> None:
    np.testing.assert_array_equal(touching_cells(np.zeros((4, 5), bool)), np.zeros((4, 5), np.int32))
    full = np.ones((4, 5), bool)
    np.testing.assert_array_equal(touching_cells(full), np.ones((4, 5), np.int32))


@pytest.mark.realdata
def test_isbi_touching_cells_bordered_weight_map() -> None:
    """On an ISBI training label: every cell survives the borders, and fast == direct on the bordered instances."""
    import tifffile

    path = real_data_root("isbi2012") / "train-labels.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    mask = tifffile.imread(path)[0] > 127
    cells = label_cells(mask)
    bordered = separation_borders(touching_cells(mask), width=1)
    assert set(np.unique(bordered)) == set(np.unique(cells))          # all K cells and background
    assert (bordered == 0).sum() < (cells == 0).sum()                  # thin borders instead of the membranes
    fast = border_weight_map(bordered, instances=True)
    np.testing.assert_allclose(fast, border_weight_map_direct(bordered, instances=True), rtol=0, atol=1e-5)
