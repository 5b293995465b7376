"""Your own cells reach training as the paper meant them: K classes with the soft-max cross-entropy (the same loss and
gradients as the one-logit form for K = 2), instance labels as separation-bordered targets with the weight map of
their objects, and the intensity rule recorded and applied at prediction."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from experiments import folder
from unet_repro.data.intensity import prepare_image
from unet_repro.data.targets import training_target, weight_map
from unet_repro.data.tiles import TileDataset
from unet_repro.inference import predict_tiled
from unet_repro.instances import separation_borders
from unet_repro.losses import WeightedBCEWithLogitsLoss, build_loss
from unet_repro.models import UNet
from unet_repro.training import load_trained
from unet_repro.weightmap import border_weight_map


def test_two_classes_give_the_loss_and_gradients_of_one_logit():
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(2, 1, 9, 7, generator=g, dtype=torch.float64) * 4).requires_grad_()
    target = (torch.rand(2, 1, 9, 7, generator=g) > 0.4).double()
    weight = torch.rand(2, 1, 9, 7, generator=g, dtype=torch.float64) * 10 + 1
    one = WeightedBCEWithLogitsLoss()(z, target, weight)
    (grad_one,) = torch.autograd.grad(one, z)
    z0 = torch.zeros_like(z, requires_grad=True)
    z1 = z.detach().clone().requires_grad_()
    two = WeightedBCEWithLogitsLoss()(torch.cat([z0, z1], dim=1), target, weight)
    grad_0, grad_1 = torch.autograd.grad(two, (z0, z1))
    assert torch.allclose(one, two, rtol=1e-12)
    assert torch.allclose(grad_1, grad_one, rtol=1e-10) and torch.allclose(grad_0, -grad_one, rtol=1e-10)
    # and the soft-max form is the paper's: mean of -w log p_t, computed here by hand
    logits = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    cls = torch.randint(0, 3, (1, 1, 4, 4), generator=g).double()
    p = torch.softmax(logits, 1).gather(1, cls.long())
    hand = -(weight[:1, :, :4, :4] * torch.log(p)).mean()
    assert torch.allclose(WeightedBCEWithLogitsLoss()(logits, cls, weight[:1, :, :4, :4]), hand)
    assert torch.allclose(build_loss("bce")(logits, cls), -torch.log(p).mean())


def test_k_channel_prediction_is_a_softmax_over_the_classes():
    torch.manual_seed(0)
    net = UNet(widths=(4, 8, 16), out_channels=3, dropout=0).eval()
    image = np.random.default_rng(0).integers(0, 256, (50, 37), dtype=np.uint8)
    p = predict_tiled(net, image)
    assert p.shape == (3, 50, 37) and np.allclose(p.sum(axis=0), 1, atol=1e-5)
    tta = predict_tiled(net, image, tta=True)
    assert tta.shape == (3, 50, 37) and np.allclose(tta.sum(axis=0), 1, atol=1e-5)


def touching_squares() -> np.ndarray:
    labels = np.zeros((40, 40), np.uint16)
    labels[4:20, 4:20], labels[4:20, 20:36], labels[20:36, 4:36] = 7, 300, 9  # three objects, touching
    return labels


def test_instance_labels_train_on_bordered_foreground_with_the_objects_weight_map():
    bordered = separation_borders(touching_squares(), width=1)
    target = training_target(bordered, "instances")
    assert target.dtype == np.uint8 and set(np.unique(target)) == {0, 1}
    assert target[4:20, 19:21].min() == 0 or target[4:20, 20].max() == 0  # a border between 7 and 300
    weights = weight_map(bordered, kind="instances")
    assert np.array_equal(weights, border_weight_map(bordered, instances=True))
    image = np.random.default_rng(1).integers(0, 256, (40, 40), dtype=np.uint8)
    ds = TileDataset([image], [bordered], tile_in=UNet(widths=(4, 8, 16)).input_size(20), tile_out=20,
                     samples_per_epoch=3, kind="instances")
    item = ds[0]
    assert set(torch.unique(item["label"]).tolist()) <= {0.0, 1.0} and item["weight"].max() > 5


def test_class_targets_balance_the_classes_and_separate_the_objects():
    classes = np.zeros((120, 120), np.uint8)
    classes[5:15, 5:15], classes[5:15, 16:30], classes[20:35, 5:35] = 1, 2, 1
    w = weight_map(classes, kind="classes")
    counts = np.bincount(classes.ravel())
    assert w[115, 115] == pytest.approx(1.0, abs=1e-6)  # the most frequent class (background), far from objects
    assert w[25, 20] == pytest.approx(counts.max() / counts[1], rel=1e-6)
    assert w[10, 15] > counts.max() / counts[0] + 5  # the one-pixel gap between two touching objects


@pytest.fixture
def own(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("images", "instances", "classes"):
        (tmp_path / name).mkdir()
    for i in range(5):
        labels = np.zeros((48, 48), np.uint16)
        n = 1
        for y in range(0, 48, 16):
            for x in range(0, 48, 16):
                labels[y:y + 16, x:x + 16] = n
                n += 1
        image = (labels > 0) * 3000 + rng.normal(400, 50, labels.shape)
        tifffile.imwrite(tmp_path / "images" / f"c{i}.tif", np.clip(image, 0, 65535).astype(np.uint16))
        tifffile.imwrite(tmp_path / "instances" / f"c{i}.tif", labels)
        tifffile.imwrite(tmp_path / "classes" / f"c{i}.tif", (labels % 3).astype(np.uint8))
    return tmp_path


def test_own_instance_labels_are_trained_with_borders_and_scored_object_by_object(own, tmp_path, capsys):
    out = tmp_path / "run"
    folder.main(["--images", str(own / "images"), "--masks", str(own / "instances"), "--widths", "4,8,16",
                 "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu", "--out", str(out)])
    first = capsys.readouterr().out.splitlines()[:4]
    assert first[0].startswith("images: 5 from 5 file(s)") and "uint16" in first[0]
    assert first[1].startswith("masks: instances") and first[3].startswith("intensity: percentile")
    result = json.loads((out / "final_metrics.json").read_text())
    assert result["config"]["mask_kind"] == "instances" and result["split"]["mask_kind"] == "instances"
    assert {"f1", "precision", "recall", "average_precision"} <= set(result["validation_objects"])
    assert result["config"]["normalization"] == "percentile"
    # the rule is applied at prediction as in training
    trained = load_trained(out / "best.pt", device="cpu")
    image = tifffile.imread(own / "images" / "c0.tif")
    expected = predict_tiled(trained.model, prepare_image(image, "percentile"))
    assert np.allclose(trained.predict(image), expected)


def test_own_class_masks_train_k_channels_and_report_per_class(own, tmp_path):
    out = tmp_path / "run"
    folder.main(["--images", str(own / "images"), "--masks", str(own / "classes"), "--mask-kind", "classes",
                 "--widths", "4,8,16", "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu", "--out",
                 str(out)])
    result = json.loads((out / "final_metrics.json").read_text())
    assert result["config"]["classes"] == 3 and len(result["validation"]["iou_per_class"]) == 3
    assert set(result["test_per_image"]) >= {"per_image", "pooled"}
    probs = tifffile.imread(out / "heldout_prob.tif")
    probs = probs[None] if probs.ndim == 3 else probs  # one validation image: ImageJ's Z of 1 is squeezed on reading
    assert probs.ndim == 4 and probs.shape[1] == 3 and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    with tifffile.TiffFile(out / "heldout_prob.tif") as f:
        assert f.series[0].axes in ("ZCYX", "CYX")  # a Z of one image is dropped from the axes


def test_the_touching_cells_experiment_runs_and_reports_every_arm(isbi_root, tmp_path):
    from experiments import touching_cells
    report = touching_cells.main(["--data-root", str(isbi_root), "--out", str(tmp_path / "tc"), "--val-slices", "1",
                                  "--widths", "4,8,16", "--epochs", "1", "--steps-per-epoch", "1",
                                  "--arms", "instances,binary"])
    assert set(report["arms"]) == {"instances", "binary"} and report["held_out_slices"] == [3]
    for arm in report["arms"].values():
        assert 0 <= arm["f1"] <= 1 and arm["n_true"] > 1
    assert (tmp_path / "tc" / "touching_cells.png").stat().st_size > 0
    assert "| instances |" in (tmp_path / "tc" / "touching_cells.md").read_text()
