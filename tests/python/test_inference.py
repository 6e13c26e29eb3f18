"""Weights verification and TorchXRayVision inference on the real shared DICOMs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medlake.errors import WeightsMismatchError, WeightsNotFoundError
from medlake.pacs.model import inference, weights

pytestmark = pytest.mark.torch

NO_META = "edge_cases/fo-dicom__CR-MONO1-10-chest.dcm"
DOG_DX = "edge_cases/highdicom__dx_image.dcm"
RG1_UNCR = "chest/pydicom-data__RG1_UNCR.dcm"
RG1_J2KI = "chest/pydicom-data__RG1_J2KI.dcm"


@pytest.fixture(scope="module")
def untrained_classifier():
    return inference.Classifier(weights.resolve(Path("/nonexistent-weights-dir"), allow_untrained=True))


@pytest.fixture
def stand_in_weights(tmp_path):
    """A torch.save'd random DenseNet under the official file name: right name, wrong digest."""
    import torch
    import torchxrayvision as xrv

    torch.manual_seed(123)
    path = tmp_path / weights.official_file_name()
    torch.save(xrv.models.DenseNet(num_classes=18), path)
    return path


def test_official_name_and_url_come_from_torchxrayvision():
    import torchxrayvision as xrv

    assert weights.official_url() == xrv.models.model_urls["all"]["weights_url"]
    assert weights.official_file_name() == (
        "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
    )


def test_missing_weights_fail_with_file_url_and_directory(tmp_path):
    with pytest.raises(WeightsNotFoundError) as error:
        weights.resolve(tmp_path)
    message = str(error.value)
    assert weights.official_file_name() in message
    assert "https://github.com/mlmed/torchxrayvision/releases/download/v1/" in message
    assert str(tmp_path) in message
    assert error.value.exit_code == 2
    assert not list(tmp_path.iterdir())  # and nothing was downloaded


def test_weights_dir_comes_from_argument_then_env_then_xrv_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    assert weights.weights_directory(None) == weights.default_cache_dir()
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "env"))
    assert weights.weights_directory(None) == tmp_path / "env"
    assert weights.weights_directory(tmp_path / "arg") == tmp_path / "arg"


def test_right_name_wrong_digest_is_rejected(stand_in_weights):
    with pytest.raises(WeightsMismatchError) as error:
        weights.resolve(stand_in_weights.parent)
    assert weights.OFFICIAL_SHA256 in str(error.value)
    assert weights.sha256_file(stand_in_weights) in str(error.value)
    assert error.value.exit_code == 2
    # Allowed untrained: the stand-in is ignored, not trusted.
    choice = weights.resolve(stand_in_weights.parent, allow_untrained=True)
    assert choice.trained is False and choice.file is None
    assert "not the official" in choice.reason


def test_a_verified_file_loads_through_xrv_without_network(stand_in_weights, monkeypatch):
    # Pretend the stand-in's digest is the published one to exercise the real offline loading path.
    monkeypatch.setattr(weights, "OFFICIAL_SHA256", weights.sha256_file(stand_in_weights))
    choice = weights.resolve(stand_in_weights.parent)
    assert choice.trained is True
    classifier = inference.Classifier(choice, threads=1)
    assert classifier.identity.weights_trained is True
    assert classifier.identity.weights_sha256 == choice.file_sha256
    assert "UNTRAINED" not in classifier.identity.name
    assert classifier.pathologies == inference.pathologies()


def test_untrained_model_is_deterministic_and_shaped_like_the_official(untrained_classifier):
    again = inference.Classifier(weights.resolve(Path("/nonexistent-weights-dir"), allow_untrained=True))
    identity = untrained_classifier.identity
    assert identity.weights_trained is False
    assert "UNTRAINED" in identity.name
    assert identity.weights_sha256 == again.identity.weights_sha256 == inference.state_dict_sha256(again.model)
    assert len(untrained_classifier.pathologies) == 18
    assert untrained_classifier.operating_points == inference.operating_points()
    assert np.allclose(untrained_classifier.model.op_threshs.numpy(), inference.operating_points())


@pytest.mark.shared
def test_every_shared_file_preprocesses_to_model_input(shared_dicom_dir):
    paths = sorted(shared_dicom_dir.rglob("*.dcm"))
    images = {str(item.path.relative_to(shared_dicom_dir)): item for item in inference.preprocess_paths(paths)}
    assert len(images) == 7
    for name, item in images.items():
        assert item.ok, f"{name}: {item.error}"
        assert item.array.shape == (1, 224, 224)
        assert item.array.dtype == np.float32
        assert -1024.5 <= item.array.min() < item.array.max() <= 1024.5, name
    assert any("no File Meta" in w for w in images[NO_META].warnings)
    assert any("non-square 169x211" in w for w in images[DOG_DX].warnings)
    assert images[DOG_DX].original_shape == (169, 211)
    assert any("MONOCHROME1" in w for w in images[RG1_UNCR].warnings)
    # JPEG 2000 (lossy) and the uncompressed original of the same image agree closely.
    diff = np.abs(images[RG1_UNCR].array - images[RG1_J2KI].array).mean()
    assert diff < 10, diff


@pytest.mark.shared
def test_no_file_meta_file_needs_the_workaround(shared_dicom_dir):
    import torchxrayvision as xrv

    path = shared_dicom_dir / NO_META
    with pytest.raises(AttributeError):
        xrv.utils.read_xray_dcm(path)
    image, warnings = inference.load_xray(path)
    assert image.shape == (440, 440)
    assert warnings[0] == "no File Meta: read as Implicit VR Little Endian"


@pytest.mark.shared
def test_pixels_above_declared_bit_depth_are_rescaled_not_rejected(shared_dicom_dir, tmp_path):
    import torchxrayvision as xrv

    # pydicom masks uncompressed pixels to BitsStored, but a JPEG 2000 decoder returns what is
    # encoded: lowering BitsStored on the J2K copy reproduces the challenge's "max image value" files.
    original = shared_dicom_dir / RG1_J2KI
    ds = pydicom.dcmread(original)
    assert ds.BitsStored == 15
    ds.BitsStored = 12
    ds.HighBit = 11
    lowered = tmp_path / "bits_lowered.dcm"
    ds.save_as(lowered)
    assert int(pydicom.dcmread(lowered).pixel_array.max()) > 4095
    with pytest.raises(ValueError, match="higher than expected bound"):
        xrv.utils.read_xray_dcm(lowered, fix_monochrome=False)
    image, warnings = inference.load_xray(lowered)
    assert any("exceed BitsStored=12 (max 4095); scaled as 15-bit data" in w for w in warnings)
    reference, _ = inference.load_xray(original)
    np.testing.assert_allclose(image, reference, atol=1e-3)
    item = inference.preprocess_path(lowered)
    assert item.ok and any("BitsStored=12" in w for w in item.warnings)


@pytest.mark.shared
def test_classify_in_batches_keeps_order_and_one_bad_file_fails_alone(untrained_classifier, shared_dicom_dir, tmp_path):
    good = sorted(shared_dicom_dir.rglob("*.dcm"))
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes((shared_dicom_dir / RG1_UNCR).read_bytes()[:50_000])
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image")
    paths = [good[0], truncated, *good[1:], not_dicom]
    results = untrained_classifier.classify_paths(paths, batch_size=3, workers=2)
    assert [r.path for r in results] == paths
    assert not results[1].ok and results[1].error
    assert not results[-1].ok and results[-1].error
    ok = [r for r in results if r.ok]
    assert len(ok) == 7
    for result in ok:
        assert len(result.scores) == 18
        assert all(0.0 <= s <= 1.0 for s in result.scores)
    # Forward-only on the same preprocessed batch gives the same scores as the pipeline.
    forward = untrained_classifier.forward(inference.preprocess_paths(good), batch_size=8)
    np.testing.assert_allclose(forward, np.array([r.scores for r in ok]), atol=1e-5)
