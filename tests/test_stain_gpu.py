"""The batched normalisers give the CPU's result on CUDA (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathda.stain import create_normaliser, normaliser_from_dict
from pathda.stain.opencv_lab import lab_u8_to_rgb, rgb_to_lab_u8, tissue_mask

HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])


def _tiles(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        h = np.zeros((size, size))
        for cy, cx in rng.integers(0, size, (size // 6, 2)):
            h += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 30) ** 2))
        e = (0.25 + 0.5 * rng.random((size, size))) * np.clip(1 - 2 * h, 0, 1)
        od = h[..., None] * HAEMATOXYLIN / np.linalg.norm(HAEMATOXYLIN)
        od = od + e[..., None] * EOSIN / np.linalg.norm(EOSIN)
        out.append(np.clip(255 * np.exp(-od) + rng.normal(0, 1, od.shape), 0, 255))
    tiles = np.stack(out).astype(np.uint8)
    tiles[-1] = 255  # one background tile: the fallback path runs on the GPU too
    return tiles


@pytest.mark.gpu
def test_lab_conversions_identical_on_cuda():
    rgb = torch.randint(0, 256, (1 << 20, 3), dtype=torch.uint8)
    assert torch.equal(rgb_to_lab_u8(rgb.cuda()).cpu(), rgb_to_lab_u8(rgb))
    assert torch.equal(lab_u8_to_rgb(rgb.cuda()).cpu(), lab_u8_to_rgb(rgb))
    assert torch.equal(tissue_mask(rgb.cuda(), 0.8).cpu(), tissue_mask(rgb, 0.8))


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["macenko", "reinhard", "vahadane"])
def test_cuda_matches_cpu_within_one_level(method):
    tiles = _tiles(9, 128, seed=0)
    cpu = create_normaliser(method).fit(_tiles(2, 256, seed=1)[0])
    gpu = normaliser_from_dict(cpu.to_dict())
    expected = cpu.transform(torch.from_numpy(tiles))
    got = gpu.transform(torch.from_numpy(tiles).cuda())
    assert got.device.type == "cuda"
    assert got.dtype == torch.uint8
    diff = (got.cpu().int() - expected.int()).abs()
    assert diff.max() <= 1
    assert gpu.fallback_count == cpu.fallback_count == 1
    image = gpu.transform_image(torch.from_numpy(tiles[0]).cuda(), block_px=64)
    assert (image.cpu().int() - expected[0].int()).abs().max() <= 1
