"""Pretrained backbones through the Hugging Face cache, offline: the path users hit, no network.

Each test writes tiny timm models into a temporary huggingface_hub cache laid out as a
download leaves it (``models--ORG--NAME/snapshots/<rev>/`` + ``refs/main``) and points
huggingface_hub at it with offline mode on.
"""

from __future__ import annotations

import subprocess
import sys
from unittest.mock import Mock

import pytest
import torch

from pathda.checkpoint import load_inference_checkpoint, read_inference_checkpoint
from pathda.cli import main
from pathda.cli._app import expand_optional_values
from pathda.errors import ConfigError, PretrainedWeightsError
from pathda.models import create_backbone, model_input_config, plan_backbone
from pathda.models.hub_cache import save_to_hub_cache
from pathda.train import TrainConfig

FM_MEAN, FM_STD = (0.7, 0.6, 0.8), (0.2, 0.25, 0.3)  # deliberately not ImageNet's


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty offline Hugging Face cache (constants are read at import, so patch them)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _tiny_vit(seed: int = 0, num_classes: int = 7):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("test_vit", num_classes=num_classes, img_size=32)


def _backbone_equal(a: torch.nn.Module, b: torch.nn.Module, skip: str = "head") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith(skip))


def test_hub_model_architecture_weights_and_normalisation_come_from_the_cache(hub_cache):
    source = _tiny_vit()
    save_to_hub_cache(
        source,
        "lab/tiny-fm",
        hub_cache,
        data_config={"mean": FM_MEAN, "std": FM_STD, "input_size": (3, 32, 32)},
    )
    plan = plan_backbone("seresnet50", 4, pretrained="hf-hub:lab/tiny-fm", input_size=32)
    assert plan.arch == "test_vit"  # the hub's config.json names the architecture
    assert plan.timm_kwargs["img_size"] == 32
    net = create_backbone("seresnet50", 4, pretrained="hf-hub:lab/tiny-fm", input_size=32)
    assert net.num_classes == 4  # own classifier, freshly initialised
    assert _backbone_equal(source, net)
    cfg = model_input_config(net)
    assert cfg.mean == pytest.approx(FM_MEAN)
    assert cfg.std == pytest.approx(FM_STD)
    assert cfg.input_size == (3, 32, 32)


def test_default_tag_loads_timm_weights_from_the_cache(hub_cache):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=1000)
    # timm's default tag of test_resnet is fetched from the hub repo timm/test_resnet.r160_in1k.
    save_to_hub_cache(source, "timm/test_resnet.r160_in1k", hub_cache)
    net = create_backbone("test_resnet", 4, pretrained="default")
    assert _backbone_equal(source, net, skip="fc")
    random = create_backbone("test_resnet", 4)
    assert not _backbone_equal(source, random, skip="fc")
    assert model_input_config(net).mean == pytest.approx(
        timm.create_model("test_resnet").pretrained_cfg["mean"]
    )


def test_offline_without_the_model_in_the_cache_is_a_one_line_error(hub_cache):
    with pytest.raises(PretrainedWeightsError, match="not in the Hugging Face cache") as err:
        create_backbone("resnet10t", 4, pretrained="hf-hub:lab/absent")
    assert "\n" not in str(err.value)
    with pytest.raises(PretrainedWeightsError, match="HF_HUB_OFFLINE"):
        create_backbone("test_resnet", 4, pretrained="default")


@pytest.mark.parametrize(
    ("error", "status"),
    [("GatedRepoError", 401), ("RepositoryNotFoundError", 401), ("HfHubHTTPError", 403)],
)
def test_gated_or_unauthorised_hub_models_say_how_to_log_in(monkeypatch, error, status):
    import timm.models
    from huggingface_hub import errors

    def refuse(*_args, **_kwargs):
        raise getattr(errors, error)("refused", response=Mock(status_code=status, headers={}))

    monkeypatch.setattr(timm.models, "load_model_config_from_hf", refuse)
    with pytest.raises(PretrainedWeightsError, match=r"huggingface-cli login.*HF_TOKEN") as err:
        create_backbone("resnet10t", 4, pretrained="hf-hub:MahmoodLab/UNI")
    assert "\n" not in str(err.value)


def test_bad_pretrained_values_are_user_errors():
    with pytest.raises(PretrainedWeightsError, match="hf-hub:ORG/NAME"):
        create_backbone("resnet10t", 4, pretrained="imagenet")
    with pytest.raises(PretrainedWeightsError, match="no pretrained weights"):
        create_backbone("test_coatnet", 4, pretrained="default")
    with pytest.raises(ConfigError, match="both set"):
        TrainConfig(pretrained="default", weights="w.pth")
    assert TrainConfig(pretrained="True").pretrained == "default"  # YAML `pretrained: true`
    assert TrainConfig(pretrained="false").pretrained is None


def test_bare_pretrained_flag_means_timm_default():
    assert expand_optional_values(["train", "s.zarr", "--pretrained"]) == [
        "train",
        "s.zarr",
        "--pretrained=default",
    ]
    assert expand_optional_values(["train", "--pretrained", "s.zarr", "-o", "x"])[1] == (
        "--pretrained=default"
    )
    argv = ["train", "--pretrained", "hf-hub:a/b", "s.zarr"]
    assert expand_optional_values(argv) == argv


def test_train_from_hub_model_offline_and_segment_without_the_hub(
    synthetic_store, tmp_path, hub_cache, monkeypatch, capsys
):
    import huggingface_hub.constants as constants

    save_to_hub_cache(
        _tiny_vit(), "lab/tiny-fm", hub_cache, data_config={"mean": FM_MEAN, "std": FM_STD}
    )
    out = tmp_path / "run"
    argv = ["train", str(synthetic_store), "--out", str(out), "--pretrained", "hf-hub:lab/tiny-fm"]
    argv += ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--workers", "0", "-q"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "tile with a patch size of 160 px" in capsys.readouterr().err  # tiles are 32 px
    meta, _ = read_inference_checkpoint(out / "model.pt")
    assert meta.arch == "test_vit"
    assert meta.timm_kwargs["img_size"] == 32  # built for the 32 px tiles of the store
    assert meta.input_config.mean == pytest.approx(FM_MEAN)
    assert meta.input_config.std == pytest.approx(FM_STD)
    assert meta.provenance["pretrained"] == "hf-hub:lab/tiny-fm"
    # Inference rebuilds the network from the checkpoint alone: an empty cache is enough.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    model, _ = load_inference_checkpoint(out / "model.pt")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)


def test_inference_does_not_import_adaptation():
    code = (
        "import sys, pathda.segment, pathda.checkpoint, pathda.models;"
        "bad = [m for m in sys.modules if m.startswith(('pathda.adapt', 'pathda.train'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
