"""Patches of one slide as a torch ``Dataset``; each DataLoader worker opens its own slide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from pathda.slide import Slide, open_slide


class SlidePatchDataset(Dataset):
    """Square patches read at the model's resolution.

    Args:
        slide_path: the slide file.
        origins: (N, 2) level-0 (x, y) top-left corners.
        patch_size: patch side in pixels at ``mpp``.
        mpp: µm/px the model was trained at (the slide is resampled to it).
        slide_mpp: level-0 µm/px to force on the slide (``--mpp``), or None to trust the file.

    Items are ``(index, patch)`` with ``patch`` a (3, patch_size, patch_size) uint8 tensor.
    Slide handles are not shared across processes: the dataset pickles without one
    and :func:`open_in_worker` (the DataLoader's ``worker_init_fn``) opens a fresh one.
    """

    def __init__(
        self,
        slide_path: str | Path,
        origins: np.ndarray,
        patch_size: int,
        mpp: float,
        slide_mpp: float | None = None,
    ) -> None:
        self.slide_path = Path(slide_path)
        self.origins = np.asarray(origins, dtype=np.int64)
        self.patch_size = int(patch_size)
        self.mpp = float(mpp)
        self.slide_mpp = slide_mpp
        self._slide: Slide | None = None

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        x, y = self.origins[index].tolist()
        size = (self.patch_size, self.patch_size)
        rgb = self.slide.read_at_mpp((x, y), size, self.mpp)
        return index, torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))

    @property
    def slide(self) -> Slide:
        """This process's open slide (opened on first use)."""
        if self._slide is None:
            self._slide = open_slide(self.slide_path, mpp=self.slide_mpp)
        return self._slide

    def close(self) -> None:
        """Release this process's slide handle."""
        if self._slide is not None:
            self._slide.close()
            self._slide = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_slide"] = None
        return state


def open_in_worker(worker_id: int) -> None:
    """``worker_init_fn``: open the worker's own slide before the first batch is requested."""
    info = get_worker_info()
    if info is not None:
        info.dataset._slide = None  # a forked copy of the parent's handle must not be used
        _ = info.dataset.slide
