"""Feature taps, default tap points, the backbone wrapper, weights loading and export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathda.adapt import (
    DomainAdaptationModel,
    FeatureTaps,
    create_backbone,
    create_method,
    default_tap_points,
)
from pathda.errors import ConfigError


class LeNet(nn.Module):
    """Small CNN with BatchNorm; its tap points must be named by the user."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(3, 8, 5), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(8, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.bn3 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(x)).flatten(1)
        return self.fc2(torch.relu(self.bn3(self.fc1(x))))


def test_feature_taps_record_named_outputs_and_remove():
    net = LeNet().eval()
    x = torch.randn(2, 3, 32, 32)
    with FeatureTaps(net, ["block1", "block2.0", "fc1"]) as taps:
        net(x)
        assert taps.outputs["block1"].shape == (2, 8, 14, 14)
        assert taps.outputs["block2.0"].shape == (2, 16, 10, 10)
        assert taps.outputs["fc1"].shape == (2, 32)
        assert torch.equal(taps.outputs["block1"], net.block1(x))
    assert not net.block1._forward_hooks
    assert not net.fc1._forward_hooks
    taps = FeatureTaps(net, ["fc1"])
    taps.remove()
    taps.remove()  # idempotent
    assert not net.fc1._forward_hooks


def test_unknown_tap_name_lists_close_matches():
    with pytest.raises(ConfigError, match=r"'blok1'.*block1"):
        FeatureTaps(LeNet(), ["blok1"])
    with pytest.raises(ConfigError, match="twice"):
        FeatureTaps(LeNet(), ["fc1", "fc1"])
    with pytest.raises(ConfigError, match="layer1"):
        create_method("ldann").build_model(LeNet(), ["layer1"], input_size=(3, 32, 32))


def test_default_tap_points_on_timm_and_generic_models():
    net = create_backbone("seresnet18", num_classes=4)
    assert default_tap_points(net, "ldann") == [
        f"layer{s}.{b}" for s in (1, 2, 3, 4) for b in (0, 1)
    ]
    assert default_tap_points(net, "lwass", "stage") == ["layer1", "layer2", "layer3", "layer4"]
    assert default_tap_points(net, "dann") == ["global_pool"]
    assert default_tap_points(net, "none") == []
    with pytest.raises(ConfigError, match="name"):
        default_tap_points(LeNet(), "ldann")
    with pytest.raises(ConfigError, match="granularity"):
        default_tap_points(net, "ldann", "layer")


def test_model_sizes_heads_from_dry_run_without_touching_batchnorm():
    net = LeNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = create_method("ldann").build_model(net, ["block1", "fc1"], input_size=(3, 32, 32))
    assert model.tap_channels == {"block1": 8, "fc1": 32}
    assert model.head("fc1").conv1.weight.shape == (2, 32, 1, 1)  # 32 // 16
    assert model.head("block1").conv1.weight.shape == (1, 8, 1, 1)  # at least one unit
    assert net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_forward_is_plain_backbone_and_forward_train_returns_features():
    net = LeNet().eval()
    model = create_method("lwass").build_model(net, ["block2", "fc1"], input_size=(3, 32, 32))
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(model(x), net(x))
    logits, features = model.forward_train(x)
    assert torch.equal(logits, net(x))
    assert set(features) == {"block2", "fc1"}
    assert features["fc1"].shape == (3, 32)
    logits2, features2 = model(x, return_features=True)
    assert torch.equal(logits2, logits)
    assert set(features2) == set(features)
    assert not net.fc1._forward_hooks  # hooks live only inside forward_train


def test_export_drops_heads_and_loads_into_plain_backbone(tmp_path):
    net = create_backbone("seresnet18", num_classes=4)
    model = create_method("ldann").build_model(net, input_size=(3, 32, 32))
    assert any(k.startswith("heads.") for k in model.state_dict())
    state = model.export_inference_state()
    assert not any("heads." in k for k in state)
    assert set(state) == set(net.state_dict())
    path = tmp_path / "model.pth"
    torch.save(state, path)
    fresh = create_backbone("seresnet18", num_classes=4, weights=path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(fresh.eval()(x), net.eval()(x))


def test_weights_in_wrappers_and_with_another_classifier(tmp_path):
    source = create_backbone("seresnet18", num_classes=10)
    wrapped = {"model": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}
    path = tmp_path / "ckpt.pth"
    torch.save(wrapped, path)
    net = create_backbone("seresnet18", num_classes=4, weights=path)
    assert torch.equal(net.conv1.weight, source.conv1.weight)
    assert net.fc.weight.shape == (4, 512)  # classifier of another shape is dropped


def test_full_wrapper_checkpoint_loads_backbone(tmp_path):
    net = create_backbone("seresnet18", num_classes=4)
    model = create_method("ldann").build_model(net, input_size=(3, 32, 32))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "full.pth")
    fresh = create_backbone("seresnet18", num_classes=4, weights=tmp_path / "full.pth")
    assert torch.equal(fresh.layer4[1].conv2.weight, net.layer4[1].conv2.weight)


def test_bad_weights_and_arch_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        create_backbone("seresnet18", weights=tmp_path / "missing.pth")
    other = tmp_path / "resnet10t.pth"
    torch.save(create_backbone("resnet10t").state_dict(), other)
    with pytest.raises(ConfigError, match="does not fit"):
        create_backbone("seresnet18", weights=other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        create_backbone("seresnet18", weights=junk)
    torch.save({"lr": torch.tensor(0.1), "note": "x"}, tmp_path / "nodict.pth")
    with pytest.raises(ConfigError, match="state dict"):
        create_backbone("seresnet18", weights=tmp_path / "nodict.pth")
    with pytest.raises(ConfigError, match="seresnet50"):
        create_backbone("seresnet_50")


def test_wrapper_needs_head_factory_for_taps():
    with pytest.raises(ValueError, match="head factory"):
        DomainAdaptationModel(LeNet(), ["fc1"], head_factory=None, input_size=(3, 32, 32))
    model = DomainAdaptationModel(LeNet(), [], input_size=(3, 32, 32))
    assert len(model.heads) == 0
