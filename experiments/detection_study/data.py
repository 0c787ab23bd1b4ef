"""NEON tree crowns: loading, spatial blocks for train / validation / test, training tiles.

Everything here is host-side NumPy. Coordinates are xyxy pixels of the *working*
scale (``scale`` times the original; 0.5 by default, where crowns are about
4-53 px across); :func:`to_original` maps boxes back for evaluation, so COCO's
size classes are computed on the annotated (original) pixels.

Split (deterministic, no randomness beyond a fixed seed): each image is cut
into a grid of roughly ``block`` x ``block`` blocks (the remainder spread over
the grid, so no sliver blocks), and the blocks of each image are shuffled by
``np.random.default_rng(seed + image index)`` and dealt out to test,
validation and train in the proportions ``fractions`` (at least one block of
each role with a positive share, in every image). A crown belongs to the block holding its box centre.
Training tiles are crops that lie inside one train block, so no training crop
sees a validation or test crown's label; crowns cut by the crop keep their
clipped box if at least ``min_visible`` of their area is inside.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np

# The two large images give the blocks; the 400 x 400 images from other sites (Florida's OSBS,
# California's SOAP) are held out whole as an out-of-site check.
BLOCK_IMAGES = ("2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop")
OUT_OF_SITE_IMAGES = ("OSBS_029", "SOAP_061")
ROLES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Scene:
    """One image at working scale: normalised ``(H, W, 3)`` float32 pixels and ``(N, 4)`` crown boxes."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    scale: float


@dataclasses.dataclass(frozen=True)
class Block:
    """A rectangle ``[x0, x1) x [y0, y1)`` of image ``image`` (an index into the scenes) with a role."""

    image: int
    role: str
    x0: int
    y0: int
    x1: int
    y1: int


def read_voc(path: pathlib.Path) -> np.ndarray:
    """Pascal VOC boxes ``(N, 4)`` xyxy, float64; every label is one class (tree)."""
    root = ET.parse(path).getroot()
    keys = ("xmin", "ymin", "xmax", "ymax")
    rows = [[float(obj.find(f"bndbox/{k}").text) for k in keys] for obj in root.iter("object")]
    return np.asarray(rows, np.float64).reshape(-1, 4)


def normalise(image: np.ndarray) -> np.ndarray:
    """Per-image, per-channel standardisation: sites differ in brightness and colour, crowns less so."""
    image = image.astype(np.float32)
    mean = image.mean(axis=(0, 1), keepdims=True)
    std = image.std(axis=(0, 1), keepdims=True)
    return (image - mean) / np.maximum(std, 1e-6)


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """Area-average resize by ``scale`` (Pillow's box filter): no aliasing of fine crown texture."""
    from PIL import Image

    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def load_scene(directory: pathlib.Path, name: str, *, scale: float = 0.5) -> Scene:
    """Read ``name.png`` and ``name.xml`` from ``directory`` (see fetch_data.py)."""
    from PIL import Image

    with Image.open(directory / f"{name}.png") as file:
        pixels = np.asarray(file.convert("RGB"))
    boxes = read_voc(directory / f"{name}.xml")
    return Scene(name, normalise(downscale(pixels, scale)), (boxes * scale).astype(np.float32), scale)


def to_original(boxes: np.ndarray, scale: float) -> np.ndarray:
    return np.asarray(boxes, np.float64) / scale


def grid_edges(length: int, block: int) -> np.ndarray:
    """Edges of ``max(1, round(length / block))`` near-equal intervals covering ``[0, length)``."""
    count = max(1, round(length / block))
    return np.linspace(0, length, count + 1).round().astype(int)


def split_blocks(
    shapes: Sequence[tuple[int, int]],
    *,
    block: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> list[Block]:
    """Blocks of every image with roles (see the module docstring). ``shapes``: ``(height, width)``."""
    blocks = []
    for index, (height, width) in enumerate(shapes):
        ys, xs = grid_edges(height, block), grid_edges(width, block)
        cells = [(x0, y0, x1, y1) for y0, y1 in itertools.pairwise(ys) for x0, x1 in itertools.pairwise(xs)]
        order = np.random.default_rng(seed + index).permutation(len(cells))
        # At least one block for every role with a positive share (a zero share gives none).
        n_test = max(1, round(fractions[2] * len(cells))) if fractions[2] > 0 else 0
        n_val = max(1, round(fractions[1] * len(cells))) if fractions[1] > 0 else 0
        if n_test + n_val > len(cells):
            raise ValueError(f"fractions {fractions} leave no blocks for training in image {index}")
        roles = ["test"] * n_test + ["val"] * n_val + ["train"] * (len(cells) - n_test - n_val)
        for cell_index, role in zip(order, roles, strict=True):
            blocks.append(Block(index, role, *(int(v) for v in cells[cell_index])))
    return blocks


def whole_image_blocks(shapes: Sequence[tuple[int, int]], role: str, *, first_image: int = 0) -> list[Block]:
    """One block per image covering all of it (the out-of-site and cross-image test sets)."""
    return [Block(first_image + i, role, 0, 0, w, h) for i, (h, w) in enumerate(shapes)]


def centres_in(boxes: np.ndarray, block: Block) -> np.ndarray:
    """Boolean mask of the boxes whose centre lies in the block (half-open, so each belongs to one)."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx >= block.x0) & (cx < block.x1) & (cy >= block.y0) & (cy < block.y1)


# --- training tiles -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Augment:
    flips: bool = True  # horizontal/vertical flips and 90-degree turns: aerial views have no "up"
    gain: float = 0.15  # per-channel multiplicative jitter (std) in normalised units
    offset: float = 0.15  # per-channel additive jitter (std)
    min_visible: float = 0.5  # keep a crown cut by the crop if this fraction of its area is inside


def crop_boxes(boxes: np.ndarray, x0: int, y0: int, size: int, min_visible: float) -> np.ndarray:
    """Boxes clipped to the crop ``[x0, x0 + size) x [y0, y0 + size)``, in crop coordinates."""
    clipped = np.clip(boxes - np.array([x0, y0, x0, y0], np.float32), 0, size)
    area = lambda b: np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    keep = (area(clipped) >= min_visible * np.maximum(area(boxes), 1e-6)) & (area(clipped) > 0)
    return clipped[keep]


def turn(image: np.ndarray, boxes: np.ndarray, k: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a square crop by ``k`` quarter turns (counter-clockwise) then optionally flip left-right."""
    size = image.shape[0]
    for _ in range(k):
        image = np.rot90(image)
        # (x, y) -> (y, size - x): rot90 turns counter-clockwise in array (row, col) terms.
        boxes = np.stack([boxes[:, 1], size - boxes[:, 2], boxes[:, 3], size - boxes[:, 0]], axis=-1)
    if flip:
        image = image[:, ::-1]
        boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=-1)
    return np.ascontiguousarray(image), boxes


def sample_tiles(
    rng: np.random.Generator,
    scenes: Sequence[Scene],
    blocks: Sequence[Block],
    *,
    batch: int,
    tile: int,
    max_gt: int,
    augment: Augment = Augment(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of training crops from ``blocks`` (all of one role), chosen with probability ~ block area.

    Returns images ``(batch, tile, tile, 3)`` float32, boxes ``(batch, max_gt, 4)`` and a
    mask ``(batch, max_gt)``. Crops are inside one block; a block smaller than the tile is
    zero-padded (zero is the image mean after normalisation). More than ``max_gt`` crowns in
    a crop is an error rather than a silent drop.
    """
    areas = np.array([(b.x1 - b.x0) * (b.y1 - b.y0) for b in blocks], np.float64)
    images = np.zeros((batch, tile, tile, 3), np.float32)
    boxes_out = np.zeros((batch, max_gt, 4), np.float32)
    mask = np.zeros((batch, max_gt), bool)
    for i in range(batch):
        b = blocks[rng.choice(len(blocks), p=areas / areas.sum())]
        scene = scenes[b.image]
        x0 = b.x0 + int(rng.integers(0, max(b.x1 - b.x0 - tile, 0) + 1))
        y0 = b.y0 + int(rng.integers(0, max(b.y1 - b.y0 - tile, 0) + 1))
        w, h = min(tile, b.x1 - x0), min(tile, b.y1 - y0)
        crop = np.zeros((tile, tile, 3), np.float32)
        crop[:h, :w] = scene.image[y0 : y0 + h, x0 : x0 + w]
        inside = crop_boxes(scene.boxes, x0, y0, tile, augment.min_visible)
        # Boxes reaching into the zero padding of a small block: clip them to the real pixels.
        inside = np.minimum(inside, np.array([w, h, w, h], np.float32))
        if augment.flips:
            crop, inside = turn(crop, inside, int(rng.integers(4)), bool(rng.integers(2)))
        crop = crop * rng.normal(1.0, augment.gain, 3).astype(np.float32)
        crop = crop + rng.normal(0.0, augment.offset, 3).astype(np.float32)
        if len(inside) > max_gt:
            raise ValueError(f"{len(inside)} crowns in one tile, more than max_gt={max_gt}")
        images[i] = crop
        boxes_out[i, : len(inside)] = inside
        mask[i, : len(inside)] = True
    return images, boxes_out, mask


def load_real(directory: pathlib.Path, *, scale: float = 0.5) -> list[Scene]:
    """The two block images, then the two out-of-site images (the indices blocks refer to)."""
    return [load_scene(directory, name, scale=scale) for name in BLOCK_IMAGES + OUT_OF_SITE_IMAGES]


def data_available(directory: pathlib.Path) -> bool:
    names = BLOCK_IMAGES + OUT_OF_SITE_IMAGES
    return all((directory / f"{n}.png").exists() and (directory / f"{n}.xml").exists() for n in names)
