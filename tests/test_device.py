"""pathda.device.resolve_device: the one reading of a ``device`` setting."""

from __future__ import annotations

import pytest
import torch

from pathda.device import resolve_device
from pathda.errors import ConfigError


def test_cpu_and_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"`device` is 'cuda:1' but CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match=r"unknown device 'gpu'; set `device` to auto"):
        resolve_device("gpu")


def test_cuda_gets_an_index_and_the_local_rank_wins(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
