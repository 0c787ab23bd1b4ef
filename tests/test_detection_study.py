"""experiments/detection_study: splits, generator, intervals, losses, and a smoke run."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jax_dfl

pytest.importorskip("pycocotools")
pytest.importorskip("PIL")

from experiments.detection_study import arms as arms_lib
from experiments.detection_study import data as data_lib
from experiments.detection_study import evaluate as ev
from experiments.detection_study import fetch_data, main
from experiments.detection_study import synthetic as syn
from experiments.detection_study.datasets import SyntheticData
from experiments.detection_study.model import Detector, geometric_logit_bias, init_params
from experiments.detection_study.train import TrainConfig
from jax_dfl.evaluation import coco_evaluate

# The two block images at the working scale 0.5 (height, width).
REAL_SHAPES = [(1236, 1150), (518, 625)]


# --- split ---------------------------------------------------------------------------------------


def test_blocks_tile_each_image_without_overlap_and_every_image_has_every_role():
    blocks = data_lib.split_blocks(REAL_SHAPES, block=160)
    assert blocks == data_lib.split_blocks(REAL_SHAPES, block=160)  # deterministic
    for index, (height, width) in enumerate(REAL_SHAPES):
        mine = [b for b in blocks if b.image == index]
        assert {b.role for b in mine} == set(data_lib.ROLES)
        cover = np.zeros((height, width), int)
        for b in mine:
            assert 0 <= b.x0 < b.x1 <= width and 0 <= b.y0 < b.y1 <= height
            cover[b.y0 : b.y1, b.x0 : b.x1] += 1
        assert np.all(cover == 1)  # a partition: no overlap between train, val and test, nothing left out
        sizes = [(b.x1 - b.x0, b.y1 - b.y0) for b in mine]
        assert min(min(s) for s in sizes) >= 120  # no sliver blocks
    # The cross-image split: one image only trains and validates, the other only tests.
    roles = lambda fractions: {
        b.role for b in data_lib.split_blocks(REAL_SHAPES[:1], block=160, fractions=fractions)
    }
    assert roles((0.75, 0.25, 0.0)) == {"train", "val"} and roles((0.0, 0.0, 1.0)) == {"test"}


def test_each_box_belongs_to_exactly_one_block():
    blocks = data_lib.split_blocks([(300, 400)], block=100)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [380, 280], (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 20, (200, 2))], axis=1)
    boxes = boxes[((boxes[:, :2] + boxes[:, 2:]) / 2 < [400, 300]).all(1)]
    owners = np.stack([data_lib.centres_in(boxes, b) for b in blocks])
    assert np.all(owners.sum(0) == 1)


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_turn_moves_boxes_with_the_pixels(k, flip):
    size = 32
    image = np.zeros((size, size, 3), np.float32)
    box = np.array([[3.0, 5.0, 11.0, 20.0]], np.float32)  # x1, y1, x2, y2
    image[5:20, 3:11] = 1
    turned, moved = data_lib.turn(image, box, k, flip)
    ys, xs = np.nonzero(turned[..., 0])
    np.testing.assert_array_equal(moved[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_training_tiles_stay_inside_train_blocks():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(200, 300, 3)).astype(np.float32)
    xy = rng.uniform(0, 280, (40, 2)) * [1, 180 / 280]
    boxes = np.concatenate([xy, xy + 12], axis=1).astype(np.float32)
    scene = data_lib.Scene("x", image, boxes, 0.5)
    blocks = [b for b in data_lib.split_blocks([(200, 300)], block=100) if b.role == "train"]
    images, out, mask = data_lib.sample_tiles(rng, [scene], blocks, batch=8, tile=64, max_gt=40)
    assert images.shape == (8, 64, 64, 3) and out.shape == (8, 40, 4)
    real = out[mask]
    assert np.all(real[:, 2:] > real[:, :2]) and np.all(real >= 0) and np.all(real <= 64)


# --- synthetic generator -------------------------------------------------------------------------


def test_synthetic_sizes_are_set_in_pixels_independently_of_the_stride():
    task = syn.SyntheticTask()
    images, boxes, mask, classes = syn.make_batch(np.random.default_rng(0), task, 64)
    assert images.shape == (64, task.image_size, task.image_size, 3) and mask.all()
    side = np.sqrt((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))
    for c, (lo, hi) in enumerate(task.size_ranges):
        assert np.all((side[classes == c] >= lo - 1e-3) & (side[classes == c] <= hi + 1e-3))
    assert np.all(boxes >= 0) and np.all(boxes <= task.image_size)
    # The generator takes no stride: the same pixels are 2, 4 or 8 times fewer bins.
    bins = {s: syn.size_in_bins(boxes, s) for s in (2, 4, 8)}
    np.testing.assert_allclose(bins[2], 2 * bins[4], rtol=1e-6)
    np.testing.assert_allclose(bins[4], 2 * bins[8], rtol=1e-6)
    ranges = list(syn.size_area_ranges(task).values())
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # size classes separable by area


def test_synthetic_edges_are_soft():
    task = dataclasses.replace(syn.SyntheticTask(), noise_std=0.0, texture_std=0.0, edge_width=(2.0, 2.0))
    box = np.array([[20.0, 20.0, 70.0, 70.0]], np.float32)
    image = syn.render(np.random.default_rng(0), box, task)
    profile = np.abs(image[45, 10:30, 0])  # across the left edge at x = 20
    inner = np.abs(image[45, 45, 0])
    assert np.any((profile > 0.1 * inner) & (profile < 0.9 * inner))  # intermediate values: not a step


# --- intervals and AP ----------------------------------------------------------------------------


def test_t_interval_by_hand():
    out = ev.t_interval([1.0, 2.0, 3.0])
    half = 4.302653 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert out["mean"] == pytest.approx(2.0)
    assert out["lo"] == pytest.approx(2 - half) and out["hi"] == pytest.approx(2 + half)


def _matches(per_block_preds, per_block_gts):
    boxes = [np.asarray(p, np.float64).reshape(-1, 4) for p in per_block_preds]
    scores = [np.linspace(0.9, 0.5, len(b)) for b in boxes]
    return ev.coco_matches(
        boxes, scores, [np.asarray(g, np.float64) for g in per_block_gts], max_detections=10
    )


def test_paired_bootstrap_matches_a_hand_computation():
    gt = [[10.0, 10.0, 40.0, 40.0]]
    far = [[100.0, 100.0, 120.0, 120.0]]
    # Seeds: seed 0's arm finds the box (AP 1), seed 1's does not (AP 0); the reference never does.
    arm = [_matches([gt], [gt]), _matches([far], [gt])]
    ref = [_matches([far], [gt]), _matches([far], [gt])]
    out = ev.bootstrap_intervals(
        {"a": arm, "r": ref}, np.zeros(1, int), references=["r"], metrics=["AP"], replicates=400
    )
    # The mean of two seeds drawn with replacement from differences {1, 0}: 0, 0.5 or 1.
    assert out["diff"]["a-r"]["AP"] == pytest.approx({"mean": 0.5, "lo": 0.0, "hi": 1.0})
    # Blocks: one seed, two blocks of one image. Both arms find block A's crown, only the arm
    # finds block B's. Resamples {A, A}: difference 0; {B, B}: 1; {A, B}: the reference recalls
    # half of the crowns at precision 1, i.e. 51 of COCO's 101 recall points, so 1 - 51/101.
    arm = [_matches([gt, gt], [gt, gt])]
    ref = [_matches([gt, far], [gt, gt])]
    out = ev.bootstrap_intervals(
        {"a": arm, "r": ref}, np.zeros(2, int), references=["r"], metrics=["AP"], replicates=400
    )
    assert out["diff"]["a-r"]["AP"]["mean"] == pytest.approx(1 - 51 / 101)
    assert out["diff"]["a-r"]["AP"]["lo"] == pytest.approx(0.0) and out["diff"]["a-r"]["AP"][
        "hi"
    ] == pytest.approx(1.0)
    assert out["AP"]["a"]["AP"] == pytest.approx({"mean": 1.0, "lo": 1.0, "hi": 1.0})


def test_paired_bootstrap_of_given_pairs_only():
    # The crowns report the pre-registered contrasts (arm, reference), not every arm against references.
    gt = [[10.0, 10.0, 40.0, 40.0]]
    far = [[100.0, 100.0, 120.0, 120.0]]
    hit, miss = _matches([gt], [gt]), _matches([far], [gt])
    arms = {"a": [hit, miss], "b": [miss, miss], "c": [hit, hit]}
    out = ev.bootstrap_intervals(
        arms, np.zeros(1, int), references=[], metrics=["AP"], replicates=400, pairs=[("a", "b"), ("a", "c")]
    )
    assert list(out["diff"]) == ["a-b", "a-c"]
    assert out["diff"]["a-b"]["AP"] == pytest.approx({"mean": 0.5, "lo": 0.0, "hi": 1.0})
    assert out["diff"]["a-c"]["AP"] == pytest.approx({"mean": -0.5, "lo": -1.0, "hi": 0.0})


def test_ap_from_matches_equals_coco_evaluate():
    rng = np.random.default_rng(1)
    gts, preds, scores = [], [], []
    for _ in range(5):
        xy = rng.uniform(0, 200, (12, 2))
        g = np.concatenate([xy, xy + rng.uniform(8, 120, (12, 2))], axis=1)
        p = np.concatenate([g + rng.normal(0, 4, g.shape), rng.uniform(0, 200, (6, 4)).cumsum(-1) / 2])
        gts.append(g)
        preds.append(p)
        scores.append(rng.uniform(size=len(p)))
    ranges = {"S": (0.0, 32.0**2), "M": (32.0**2, 96.0**2), "L": (96.0**2, 1e10), "T1": (0.0, 2000.0)}
    matches = ev.coco_matches(preds, scores, gts, max_detections=300, area_ranges=ranges)
    ours = ev.ap_from_matches(matches)
    reference = coco_evaluate(
        np.stack(preds),
        np.stack(scores),
        np.zeros((5, 18), int),
        np.stack(gts),
        np.zeros((5, 12), int),
        max_detections=300,
        area_ranges=ranges,
    )
    for key in ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AP_T1"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12), key
    # Two copies of every image: the same precision-recall curve up to ties, so nearly the same AP.
    twice = ev.ap_from_matches(matches, np.full(5, 2))
    assert twice["AP"] == pytest.approx(ours["AP"], abs=0.02)


def test_spearman():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert ev.spearman(x, x**3) == pytest.approx(1.0)
    assert ev.spearman(x, -x) == pytest.approx(-1.0)
    # Hand: ranks of y = [2, 1, 4, 3, 5]; d = [1, 1, 1, 1, 0]; rho = 1 - 6 * 4 / (5 * 24) = 0.8.
    assert ev.spearman(x, np.array([20.0, 10.0, 40.0, 30.0, 50.0])) == pytest.approx(0.8)
    assert math.isnan(ev.spearman(x[:2], x[:2]))


# --- arms and model ------------------------------------------------------------------------------


def _box_loss_inputs(num_bins=arms_lib.NUM_BINS):
    rng = np.random.default_rng(0)
    a = 24
    points = jnp.asarray(rng.uniform(20, 60, (a, 2)), jnp.float32)
    strides = jnp.full((a,), 8.0)
    targets = jnp.concatenate([points - rng.uniform(2, 30, (a, 2)), points + rng.uniform(2, 30, (a, 2))], -1)
    logits = jnp.asarray(rng.normal(size=(a, 4, num_bins)), jnp.float32)
    pred = arms_lib.decoded_boxes(arms_lib.ARMS["ciou_dfl"], logits, points, strides)
    fg = jnp.asarray(rng.uniform(size=a) < 0.5)
    scores = jnp.where(fg[:, None], jnp.asarray(rng.uniform(size=(a, 1)), jnp.float32), 0)
    return logits, pred, points, strides, targets, scores, fg, jnp.float32(7.0)


def test_ciou_dfl_arm_is_yolo_box_loss_and_the_dense_path_agrees():
    inputs = _box_loss_inputs()
    yolo = arms_lib.box_loss(arms_lib.ARMS["ciou_dfl"], *inputs)
    # The log-bin arm's dense code path with integer bins must give the same two terms.
    dense_arm = dataclasses.replace(arms_lib.ARMS["ciou_dfl_log"], log_bins=False)
    dense = arms_lib.box_loss(dense_arm, *inputs)
    np.testing.assert_allclose(np.array(yolo), np.array(dense), rtol=1e-5)
    ciou_only = arms_lib.box_loss(arms_lib.ARMS["ciou_dist"], *inputs)
    np.testing.assert_allclose(float(ciou_only[0]), float(yolo[0]), rtol=1e-5)
    assert float(ciou_only[1]) == 0.0


def test_hl_gauss_arm_is_ciou_plus_hl_gauss_cross_entropy():
    assert arms_lib.available(["ciou", "ciou_hl_gauss"]) == (["ciou", "ciou_hl_gauss"], [])
    inputs = _box_loss_inputs()
    logits, _, points, strides, targets, scores, fg, norm = inputs
    iou_term, dist = arms_lib.box_loss(arms_lib.ARMS["ciou_hl_gauss"], *inputs)
    # The same CIoU term as the other CIoU arms, and the HL-Gauss cross-entropy written out here.
    ciou_only, _ = arms_lib.box_loss(arms_lib.ARMS["ciou_dist"], *inputs)
    np.testing.assert_allclose(float(iou_term), float(ciou_only), rtol=1e-6)
    sides = jnp.clip(jax_dfl.bbox2distance(points, targets) / strides[:, None], 0, arms_lib.NUM_BINS - 1)
    per_side = jax_dfl.hl_gauss_loss(logits, sides, sigma=arms_lib.HL_GAUSS_SIGMA)
    weight = jnp.sum(scores, -1)
    expected = jnp.sum(jnp.where(fg, jnp.mean(per_side, -1) * weight, 0)) / jnp.maximum(norm, 1)
    assert float(dist) == pytest.approx(float(expected), rel=1e-5)
    assert float(dist) > 0


def test_initial_distribution_mean_and_paired_initialisation():
    for values in (np.arange(16.0), arms_lib.log_bin_values()):
        bias = geometric_logit_bias(values, 2.0)
        p = np.exp(bias - bias.max())
        assert (p @ values) / p.sum() == pytest.approx(2.0, abs=1e-6)
    # Abstract models: NNX's eager initialisers would compile every op (slow); init_params draws.
    scalar = nnx.eval_shape(lambda: Detector(rngs=nnx.Rngs(3)))
    dist = nnx.eval_shape(lambda: Detector(num_bins=16, rngs=nnx.Rngs(3)))
    images = jnp.zeros((2, 64, 64, 3))
    # init_params: same seed, identical weights everywhere but the box head, for any two arms.
    flat = lambda m, seed: {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(init_params(m, seed)[1])
    }
    a, b, c = flat(scalar, 3), flat(dist, 3), flat(dist, 4)
    shared = [k for k in a if not k.startswith("['box']")]
    assert len(shared) > 10 and set(shared) < set(b)
    for k in shared:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(b["['down'][0]['kernel'].value"], c["['down'][0]['kernel'].value"])
    # The initial boxes: about 2 bins per side for both heads (softplus of the bias; decoded bins).
    for model, arm in ((dist, "ciou_dfl"), (scalar, "ciou")):
        graphdef, params = init_params(model, 0)
        logits, box = jax.jit(lambda p, g=graphdef: nnx.merge(g, p)(images))(params)
        assert logits.shape == (2, 16 * 16 + 8 * 8 + 4 * 4)
        assert box.shape == (*logits.shape, 4, *([16] if arm == "ciou_dfl" else []))
        np.testing.assert_allclose(np.asarray(arms_lib.ARMS[arm].distances(box)), 2.0, atol=0.05)


# --- data files ----------------------------------------------------------------------------------


def _write_fake_cache(directory):
    """Small PNG + Pascal VOC files under the real names: the real-data code path without the data."""
    from PIL import Image

    task = syn.SyntheticTask(
        image_size=400, size_ranges=((16.0, 24.0), (24.0, 40.0), (40.0, 60.0)), objects_per_class=6
    )
    rng = np.random.default_rng(0)
    for name in data_lib.BLOCK_IMAGES + data_lib.OUT_OF_SITE_IMAGES:
        boxes, _ = syn.sample_boxes(rng, task)
        pixels = syn.render(rng, boxes, task)
        pixels = np.clip((pixels - pixels.min()) / np.ptp(pixels) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(directory / f"{name}.png")
        objects = "".join(
            f"<object><name>Tree</name><bndbox><xmin>{x1:.0f}</xmin><ymin>{y1:.0f}</ymin><xmax>{x2:.0f}</xmax>"
            f"<ymax>{y2:.0f}</ymax></bndbox></object>"
            for x1, y1, x2, y2 in boxes
        )
        (directory / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename>{objects}</annotation>"
        )


def test_real_data_files_when_fetched():
    cache = fetch_data.default_cache()
    if not data_lib.data_available(cache):
        pytest.skip(f"no NEON data in {cache}: python -m experiments.detection_study.fetch_data")
    counts = [
        len(data_lib.read_voc(cache / f"{n}.xml"))
        for n in data_lib.BLOCK_IMAGES + data_lib.OUT_OF_SITE_IMAGES
    ]
    assert counts == [574, 279, 61, 37]


def test_smoke_preset_end_to_end(tmp_path):
    """The whole pipeline, both data sets, at the smallest size (the quick preset, smaller)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    _write_fake_cache(cache)
    out = tmp_path / "out"
    results = main.main(
        ["--config", "smoke", "--cache", str(cache), "--out", str(out), "--allow-unpinned-data"]
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["device"]["platform"] == "cpu"
    for name in ("real", "synthetic"):
        part = saved[name]
        assert set(part["chosen_lr"]) == {"ciou", "ciou_dfl"}
        # ciou: 3 learning rates; ciou_dfl: 3 learning rates x 2 auxiliary gains; one pilot seed.
        assert len(part["pilot"]) == 3 + 3 * 2
        tests = part["tests"].values()
        assert tests and all("p_sign_flip_holm" in t["ciou_dfl-ciou"] for t in tests)
    real = saved["real"]
    assert len(real["runs"]) == 2 * 2  # arms x seeds
    assert {"blocks", "split"} <= real["data"].keys()
    assert set(real["intervals"]["diff"]) == {"ciou_dfl-ciou"}
    assert {"AP", "AP_S", "AP_T1"} <= real["intervals"]["diff"]["ciou_dfl-ciou"].keys()
    for run in real["runs"]:
        assert [c["step"] for c in run["curve"]] == [2]
        assert {"AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AP_T1", "AP_T2", "AP_T3"} <= run["test"].keys()
        assert "out_of_site" in run["extra"]
        # Each record names the crowns files it read (here the stand-ins: not the pinned values).
        read = run["provenance"]["data_sha256"]
        assert read == fetch_data.data_checksums(cache)["files"] and read != {
            k: v for k, v in fetch_data.PINNED_SHA256.items() if k in read
        }
    syn_part = saved["synthetic"]["conditions"]["8"]
    assert len(syn_part["runs"]) == 4 and "ciou_dfl-ciou" in syn_part["diff"]
    assert saved["synthetic"]["resolution"]
    for png in ("ap_by_size_real.png", "curves_real.png", "test_tiles_real.png", "resolution_synthetic.png"):
        assert (out / png).stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert "| ciou_dfl-ciou |" in summary and "## synthetic" in summary
    # Paired: the same seed gives the same first batch to every arm, whatever the arm.
    assert results["config"]["seeds"] == 2 and sorted({r["seed"] for r in real["runs"]}) == [0, 1]
    # A restart finds every run recorded and trains nothing, with the same results.
    again = main.main(
        ["--config", "smoke", "--cache", str(cache), "--out", str(out), "--allow-unpinned-data"]
    )
    assert again["config"]["seconds_total"] < results["config"]["seconds_total"]
    assert again["synthetic"]["tests"] == results["synthetic"]["tests"]

    # The interleaved step timing on the same (already compiled) program, its plot and its table.
    from experiments.detection_study import timing

    fields = saved["synthetic"]["conditions"]["8"]["train_config"]
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    batch = SyntheticData(syn.SyntheticTask(), config, val_images=1, test_images=1).batch(0, 0)
    measured = timing.time_arms(["ciou", "ciou_dfl"], config, batch, rounds=2, steps=1)
    assert measured["ciou"]["ratio_to_ciou"] == 1.0 and len(measured["ciou_dfl"]["rounds"]) == 2
    assert all(v["median_s_per_step"] > 0 for v in measured.values())
    record = {
        "device": saved["device"],
        "date": "today",
        "load_average_before": [0.0],
        "load_average_after": [0.0],
        "rounds": 2,
        "steps_per_round": 1,
        "command": "timing.py",
        "synthetic_stride8": measured,
    }
    (out / "timing.json").write_text(json.dumps(record))
    assert timing.plot_step_time(record, out) == ["curves_synthetic_stride8_step_time.png"]
    main.main(["--out", str(out), "--summarise"])
    assert "| ciou_dfl | " in (out / "summary.md").read_text().split("Seconds per training step")[1]

    # The tile figure's script retrains seed 0 and gets the study's own test AP back exactly.
    from experiments.detection_study import tiles

    (out / "test_tiles_real.png").unlink()
    check = tiles.main(
        ["--out", str(out), "--cache", str(cache), "--block", "64", "--arms", "ciou", "ciou_dfl"]
    )
    # The study trained its seeds vmapped, the script retrains one run alone: equal to float tolerance.
    for arm in ("ciou", "ciou_dfl"):
        assert check[arm]["AP_now"] == pytest.approx(check[arm]["AP_in_study"], abs=1e-3)
    assert (out / "test_tiles_real.png").stat().st_size > 1000


def test_fetch_refuses_a_file_whose_sha256_differs_from_the_pin(tmp_path):
    # A stand-in wheel holding one pinned member with other bytes: extraction must refuse it.
    import zipfile

    name = "OSBS_029.xml"
    wheel = tmp_path / f"deepforest-{fetch_data.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"deepforest/data/{name}", b"<annotation/>")
    with pytest.raises(ValueError, match="SHA-256"):
        fetch_data.extract(wheel, tmp_path / "cache")
    assert not (tmp_path / "cache" / name).exists()


def test_data_checksums_name_the_files_that_differ(tmp_path):
    _write_fake_cache(tmp_path)
    checks = fetch_data.data_checksums(tmp_path)
    assert set(checks["files"]) == {n for n in fetch_data.PINNED_SHA256 if not n.startswith("deepforest_")}
    assert sorted(checks["mismatched"]) == sorted(checks["files"])  # stand-in images: none match


def test_coverage_script_counts_the_training_batches_and_skips_absent_crowns(tmp_path):
    from experiments.detection_study import coverage

    result = coverage.main(
        ["--out", str(tmp_path), "--cache", str(tmp_path / "empty"), "--seeds", "1", "--steps", "1"]
    )
    assert set(result["conditions"]) == {"synthetic_stride8", "synthetic_stride4"}
    assert "crowns skipped" in result["skipped"]
    # The boxes counted are the study's first training batch (seed 100, step 0): its candidate
    # side distances at stride 8, by brute force (points strictly inside, four sides each).
    config = TrainConfig(tile=96, strides=(8,), max_gt=6)
    _, boxes, mask = SyntheticData(syn.SyntheticTask(), config, val_images=1, test_images=1).batch(100, 0)
    points, _ = jax_dfl.anchor_points([(12, 12)], [8])
    sides = np.concatenate(
        [points[None, None] - boxes[:, :, None, :2], boxes[:, :, None, 2:] - points[None, None]], -1
    )
    inside = (sides.min(-1) > 0) & mask[:, :, None]
    entry = result["conditions"]["synthetic_stride8"]
    assert entry["uniform"]["num_sides"] == 4 * inside.sum()
    assert entry["uniform"]["num_clipped"] == 0 and entry["log_bins_identical"]
    assert entry["largest_side_px"] == pytest.approx(44 * math.sqrt(1.4))
    assert result["conditions"]["synthetic_stride4"]["largest_side_px"] / 4 < arms_lib.NUM_BINS - 1
    written = json.loads((tmp_path / "coverage.json").read_text())
    assert written["conditions"]["synthetic_stride4"]["images"] == 16
    assert "**synthetic_stride8**" in (tmp_path / "coverage.md").read_text()


def test_training_loss_logs_the_clipped_fraction_without_changing_the_loss():
    from experiments.detection_study import train as train_lib
    from experiments.detection_study.model import feature_shapes

    # Stride 4, 16 bins: sides up to 60 px. A 128 px wide box makes at least one side of each of
    # its points clip; the small boxes clip nothing.
    config = TrainConfig(batch=2, tile=128, strides=(4,), max_gt=3)
    logged = dataclasses.replace(config, log_clipped=True)
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, 0] = [0, 20, 128, 36]
    boxes[0, 1] = [40, 40, 56, 60]
    boxes[1, 0] = [4, 4, 20, 24]
    mask = np.array([[True, True, False], [True, False, False]])
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 128, 128, 3)), jnp.float32)
    points, strides = anchor = jax_dfl.anchor_points(feature_shapes(128, 128, (4,)), (4,))
    for name in ("ciou_dfl", "ciou_dist_l1", "ciou"):
        arm = arms_lib.ARMS[name]
        graphdef, params = init_params(nnx.eval_shape(lambda a=arm: train_lib.build_model(a, (4,), 0)), 0)

        def run(c, p, g=graphdef, a=arm):
            return train_lib.losses(a, nnx.merge(g, p), images, jnp.asarray(boxes), jnp.asarray(mask), c)

        plain_total, plain = jax.jit(lambda p, r=run: r(config, p))(params)
        total, parts = jax.jit(lambda p, r=run: r(logged, p))(params)
        assert float(total) == float(plain_total)  # the log changes nothing it is not asked for
        assert {k: float(v) for k, v in plain.items()} == {k: float(parts[k]) for k in plain}
        if not arm.distribution:
            assert "clipped" not in parts
            continue
        # Reference: the same assignment, its foreground's side targets counted in float64.
        logits, box_out = jax.jit(lambda p, g=graphdef: nnx.merge(g, p)(images))(params)
        pred = arms_lib.decoded_boxes(arm, box_out, *anchor)
        assign = jax.vmap(
            lambda s, b, gb, gm: jax_dfl.task_aligned_assign(
                pred_boxes=b,
                pred_scores=s,
                points=points,
                gt_boxes=gb,
                gt_labels=jnp.zeros(3, jnp.int32),
                gt_mask=gm,
                top_k=10,
                alpha=0.5,
                beta=6.0,
            )
        )(jax.nn.sigmoid(logits)[..., None], pred, jnp.asarray(boxes), jnp.asarray(mask))
        fg = np.asarray(assign.foreground)
        target = np.asarray(assign.boxes, np.float64)[fg]
        p = np.broadcast_to(np.asarray(points, np.float64), (*fg.shape, 2))[fg]
        s = np.broadcast_to(np.asarray(strides, np.float64), fg.shape)[fg][:, None]
        sides = np.concatenate([p - target[:, :2], target[:, 2:] - p], 1) / s
        expected = np.mean((sides < 0) | (sides > 15))
        assert fg.sum() > 0 and 0 < expected < 1
        assert float(parts["clipped"]) == pytest.approx(expected, abs=1e-7)


def test_clipping_script_reads_the_confirmatory_settings_and_logs_every_interval(tmp_path):
    from experiments.detection_study import clipping, coverage

    (stride8, stride4), skipped = coverage.conditions(tmp_path / "empty")
    assert "crowns skipped" in skipped
    records = tmp_path / "records" / "synthetic_stride8"
    records.mkdir(parents=True)
    record = {"lr": 0.01, "gain": 0.1, "curve": [{"step": 50}, {"step": 100}]}
    (records / "ciou_dfl_seed100_lr0.01_gain0.1.json").write_text(json.dumps(record))
    settings = clipping.settings_for(tmp_path, stride8, "ciou_dfl")
    assert settings == {
        "lr": 0.01,
        "gain": 0.1,
        "steps": 100,
        "from": "synthetic_stride8/ciou_dfl_seed100_lr0.01_gain0.1.json",
    }
    # No stride-4 record yet: the stride-8 settings (the synthetic strides share the schedule).
    assert clipping.settings_for(tmp_path, stride4, "ciou_dfl") == settings
    with pytest.raises(FileNotFoundError, match="ciou_dist_l1 seed 100"):
        clipping.settings_for(tmp_path, stride8, "ciou_dist_l1")
    run = clipping.logged_run(stride8, "ciou_dfl", {**settings, "steps": 3}, seed=1000)
    assert [c["step"] for c in run["curve"]] == [3]
    # The coverage scan found no candidate beyond the bins at stride 8, so no target can clip.
    assert run["max_interval_clipped"] == 0.0 and run["curve"][0]["foreground"] > 0
    text = clipping.markdown({"seed": 1000, "runs": [run], "skipped": skipped})
    assert "No training step of these runs clipped a target." in text
    assert "| synthetic_stride8 | `ciou_dfl` | 0.01 | 0.1 | 3 | 0 | 0 |" in text
    tiny = clipping.markdown({"seed": 1000, "runs": [{**run, "max_interval_clipped": 1e-5}], "skipped": None})
    assert "| 0.001 % |" in tiny and "1 of 1 runs clipped targets" in tiny
