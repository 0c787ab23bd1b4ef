"""The two data sets behind one interface: a training stream, validation AP, and the test record.

``Dataset.batch(seed, step)`` is a pure function of its arguments (a NumPy
generator seeded by ``[seed, step]``), so every arm sees the same batches for a
seed. ``validate(arm, model)`` returns COCO AP on the validation split;
``test(arm, model)`` returns the matches the bootstrap needs, the detections
the plots draw and the per-detection records of the GFLv2 premise check.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import data as data_lib
from . import synthetic as syn
from .arms import Arm
from .evaluate import (
    EvalConfig,
    Matches,
    ap_from_matches,
    coco_and_terciles,
    coco_matches,
    detect_scene,
    localisation_records,
    make_nms,
    point_predictions,
    tercile_edges,
)
from .train import TrainConfig

VAL_SEED, TEST_SEED = 10**6, 2 * 10**6


@functools.cache
def _predictor(arm: Arm, graphdef, strides: tuple[int, ...]):
    """One jitted forward per arm and graph: ``(params, images) -> per-point predictions``."""
    from flax import nnx

    def predict(params, images):
        return point_predictions(arm, nnx.merge(graphdef, params), images, strides)

    return jax.jit(predict)


def predictor(arm: Arm, model, strides):
    from flax import nnx

    graphdef, params = nnx.split(model)
    fn = _predictor(arm, graphdef, tuple(strides))
    return lambda images: fn(params, images)


@dataclasses.dataclass
class TestRecord:
    matches: Matches  # one COCO image per test block / synthetic image
    strata: np.ndarray  # the bootstrap's strata (source image of each block; zeros for synthetic)
    records: np.ndarray  # localisation_records rows
    detections: list  # per test image: (boxes, scores) in original pixels, for the figures
    extra: dict  # out-of-site and per-image metrics


class RealData:
    """NEON crowns: spatial blocks of the two YELL images, OSBS and SOAP held out whole."""

    name = "real"

    def __init__(
        self,
        directory: pathlib.Path,
        config: TrainConfig,
        *,
        block: int = 160,
        split: str = "blocks",
        scale: float = 0.5,
        eval_config: EvalConfig | None = None,
    ):
        eval_config = eval_config or EvalConfig()
        self.config, self.eval_config, self.split = config, eval_config, split
        self.directory = directory  # the records name the SHA-256 of the files read from it
        self.scenes = data_lib.load_real(directory, scale=scale)
        shapes = [s.image.shape[:2] for s in self.scenes]
        if split == "blocks":
            self.blocks = data_lib.split_blocks(shapes[:2], block=block)
        elif split == "cross_image":  # train / validate on 528000, test on every block of 541000
            first = data_lib.split_blocks(shapes[:1], block=block, fractions=(0.75, 0.25, 0.0))
            second = data_lib.split_blocks(shapes[1:2], block=block, fractions=(0.0, 0.0, 1.0))
            self.blocks = first + [dataclasses.replace(b, image=1) for b in second]
        else:
            raise ValueError(f"unknown split {split!r}")
        self.blocks += data_lib.whole_image_blocks(shapes[2:], "out_of_site", first_image=2)
        self.train_blocks = [b for b in self.blocks if b.role == "train"]
        original = np.concatenate([data_lib.to_original(s.boxes, s.scale) for s in self.scenes[:2]])
        self.terciles = tercile_edges(original)
        self.area_ranges = coco_and_terciles(self.terciles)
        self.nms = make_nms(eval_config, eval_config.max_detections)

    def describe(self) -> dict:
        counts = {}
        for b in self.blocks:
            name = self.scenes[b.image].name
            crowns = int(data_lib.centres_in(self.scenes[b.image].boxes, b).sum())
            entry = counts.setdefault(name, {}).setdefault(b.role, {"blocks": 0, "crowns": 0})
            entry["blocks"] += 1
            entry["crowns"] += crowns
        return {
            "split": self.split,
            "scale": self.scenes[0].scale,
            "blocks": counts,
            "tercile_edges_sqrt_area_px": list(self.terciles),
            "area_ranges": self.area_ranges,
        }

    def batch(self, seed: int, step: int):
        rng = np.random.default_rng([seed, step])
        c = self.config
        return data_lib.sample_tiles(
            rng, self.scenes, self.train_blocks, batch=c.batch, tile=c.tile, max_gt=c.max_gt
        )

    def _per_block(self, arm: Arm, model, role: str):
        """Per block of ``role``: detections and gts in original pixels, plus spread data."""
        predict = predictor(arm, model, self.config.strides)
        out = []
        for index, scene in enumerate(self.scenes):
            blocks = [b for b in self.blocks if b.role == role and b.image == index]
            if not blocks:
                continue
            dets = detect_scene(
                lambda x: predict(x), self.nms, scene, blocks, self.config.strides, self.eval_config
            )
            for b in blocks:
                mine = data_lib.centres_in(dets.boxes, b)
                gts = data_lib.centres_in(scene.boxes, b)
                out.append(
                    {
                        "image": index,
                        "block": b,
                        "boxes": data_lib.to_original(dets.boxes[mine], scene.scale),
                        "scores": dets.scores[mine],
                        "spread": dets.spread[mine],
                        "sharpness": dets.sharpness[mine],
                        "gt": data_lib.to_original(scene.boxes[gts], scene.scale),
                        "candidates": dets.candidates,
                    }
                )
        return out

    def _matches(self, blocks, area_ranges=None) -> Matches:
        return coco_matches(
            [b["boxes"] for b in blocks],
            [b["scores"] for b in blocks],
            [b["gt"] for b in blocks],
            max_detections=self.eval_config.max_detections,
            area_ranges=area_ranges,
        )

    def validate(self, arm: Arm, model) -> dict[str, float]:
        stats = ap_from_matches(self._matches(self._per_block(arm, model, "val"), {}))
        return {"val_AP": stats["AP"], "val_AP50": stats["AP50"]}

    def test(self, arm: Arm, model) -> TestRecord:
        blocks = self._per_block(arm, model, "test")
        matches = self._matches(blocks, self.area_ranges)
        records = np.concatenate(
            [
                localisation_records(b["boxes"], b["scores"], b["spread"], b["sharpness"], b["gt"])
                for b in blocks
            ]
        )
        extra = {}
        for index in sorted({b["image"] for b in blocks}):  # AP per source image: a cross-image view
            mine = [b for b in blocks if b["image"] == index]
            extra[f"test_{self.scenes[index].name}"] = ap_from_matches(self._matches(mine, self.area_ranges))
        sites = self._per_block(arm, model, "out_of_site")
        for b in sites:
            extra[f"out_of_site_{self.scenes[b['image']].name}"] = ap_from_matches(
                self._matches([b], self.area_ranges)
            )
        extra["out_of_site"] = ap_from_matches(self._matches(sites, self.area_ranges))
        extra["max_nms_candidates"] = max(b["candidates"] for b in blocks + sites)
        strata = np.array([b["image"] for b in blocks])
        detections = [(b["boxes"], b["scores"]) for b in blocks]
        return TestRecord(matches, strata, records, detections, extra)

    def test_views(self, count: int = 3) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
        """The first ``count`` test blocks as (RGB-ish image, gt boxes in original px, block origin px)."""
        views = []
        for b in [b for b in self.blocks if b.role == "test"][:count]:
            scene = self.scenes[b.image]
            crop = scene.image[b.y0 : b.y1, b.x0 : b.x1]
            gts = data_lib.to_original(scene.boxes[data_lib.centres_in(scene.boxes, b)], scene.scale)
            views.append((crop, gts, (b.x0 / scene.scale, b.y0 / scene.scale), scene.scale))
        return views


class SyntheticData:
    """The controlled generator at one output stride; data identical across strides for a seed."""

    name = "synthetic"

    def __init__(
        self,
        task: syn.SyntheticTask,
        config: TrainConfig,
        *,
        val_images: int,
        test_images: int,
        chunk: int = 64,
    ):
        if len(config.strides) != 1:
            raise ValueError("the synthetic control uses one output level: config.strides = (stride,)")
        self.task, self.config, self.chunk = task, config, chunk
        self.stride = config.strides[0]
        self.val = syn.make_batch(np.random.default_rng(VAL_SEED), task, val_images)
        self.test_set = syn.make_batch(np.random.default_rng(TEST_SEED), task, test_images)
        self.area_ranges = syn.size_area_ranges(task)
        self.eval_config = EvalConfig(max_detections=20)  # 6 objects an image: 20 is above the count
        nms = make_nms(self.eval_config, self.eval_config.max_detections)
        self.nms = jax.jit(jax.vmap(nms))

    def describe(self) -> dict:
        return {
            "task": dataclasses.asdict(self.task),
            "stride": self.stride,
            "val_images": len(self.val[0]),
            "test_images": len(self.test_set[0]),
            "area_ranges": self.area_ranges,
        }

    def batch(self, seed: int, step: int):
        images, boxes, mask, _ = syn.make_batch(
            np.random.default_rng([seed, step]), self.task, self.config.batch
        )
        pad = self.config.max_gt - boxes.shape[1]  # the same padded shape as the crowns' batches
        return images, np.pad(boxes, ((0, 0), (0, pad), (0, 0))), np.pad(mask, ((0, 0), (0, pad)))

    def _detect(self, arm: Arm, model, images: np.ndarray):
        predict = predictor(arm, model, self.config.strides)
        outs = []
        for start in range(0, len(images), self.chunk):
            part = images[start : start + self.chunk]
            n = len(part)
            if n < self.chunk:
                part = np.concatenate([part, np.zeros((self.chunk - n, *part.shape[1:]), part.dtype)])
            scores, boxes, spread, sharp = predict(jnp.asarray(part))
            keep, valid = self.nms(boxes, scores, jnp.ones(scores.shape, bool))
            index = np.maximum(np.asarray(keep), 0)  # padding (-1) gathers row 0; masked by valid
            valid = np.asarray(valid)
            kept = [
                np.take_along_axis(np.asarray(a), index.reshape(*index.shape, *([1] * (a.ndim - 2))), axis=1)
                for a in (boxes, scores, spread, sharp)
            ]
            for i in range(n):
                v = valid[i]
                outs.append(
                    {
                        k: a[i][v]
                        for k, a in zip(("boxes", "scores", "spread", "sharpness"), kept, strict=True)
                    }
                )
        return outs

    def _matches(self, dets, gts, area_ranges) -> Matches:
        return coco_matches(
            [d["boxes"] for d in dets],
            [d["scores"] for d in dets],
            list(gts),
            max_detections=self.eval_config.max_detections,
            area_ranges=area_ranges,
        )

    def validate(self, arm: Arm, model) -> dict[str, float]:
        stats = ap_from_matches(self._matches(self._detect(arm, model, self.val[0]), self.val[1], {}))
        return {"val_AP": stats["AP"], "val_AP50": stats["AP50"]}

    def test(self, arm: Arm, model) -> TestRecord:
        images, boxes = self.test_set[0], self.test_set[1]
        dets = self._detect(arm, model, images)
        matches = self._matches(dets, boxes, self.area_ranges)
        records = np.concatenate(
            [
                localisation_records(d["boxes"], d["scores"], d["spread"], d["sharpness"], g)
                for d, g in zip(dets, boxes, strict=True)
            ]
        )
        return TestRecord(matches, np.zeros(len(images), int), records, [], {})


def size_edges_for(dataset) -> Sequence[float]:
    """sqrt-area edges of the size groups used by the premise check."""
    if isinstance(dataset, RealData):
        return dataset.terciles
    return [dataset.task.size_ranges[1][0], dataset.task.size_ranges[2][0]]
