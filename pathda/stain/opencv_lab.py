"""8-bit sRGB <-> CIE L*a*b* in torch, bit-exact with OpenCV's ``cvtColor`` for ``uint8``.

staintools' Reinhard normaliser and its tissue mask both go through OpenCV's 8-bit LAB
(``COLOR_RGB2LAB`` / ``COLOR_LAB2RGB``), which is a fixed-point algorithm with lookup tables,
not the textbook float formula. Matching it bit for bit is what lets the torch normalisers agree
with the staintools reference to the grey level. The tables below are rebuilt from the
constants in OpenCV's ``modules/imgproc/src/color_lab.cpp`` (``RGB2Lab_b`` and
``Lab2RGBinteger``); OpenCV computes them with IEEE single/double soft-float, which numpy's
float32/float64 arithmetic reproduces.

Channel conventions (OpenCV's 8-bit LAB): ``L`` in [0, 255] is L* x 255/100; ``a`` and ``b``
are a* + 128 and b* + 128.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

_LAB_SHIFT = 12  # xyz_shift
_GAMMA_SHIFT = 3
_LAB_SHIFT2 = _LAB_SHIFT + _GAMMA_SHIFT
_CBRT_TAB_SIZE = 256 * 3 // 2 * (1 << _GAMMA_SHIFT)
_INV_GAMMA_SHIFT = 12
_INV_GAMMA_TAB_SIZE = 1 << _INV_GAMMA_SHIFT
_BASE_SHIFT = 14  # Lab2RGBinteger::base_shift == lab_base_shift
_BASE = 1 << _BASE_SHIFT
_MIN_AB = -8145  # minABvalue

# OpenCV's double constants, given by their IEEE bit patterns so no decimal rounding creeps in.
_SRGB2XYZ_D65 = np.array(
    [0x3FDA65A14488C60D, 0x3FD6E297396D0918, 0x3FC71819D2391D58,
     0x3FCB38CDA6E75FF6, 0x3FE6E297396D0918, 0x3FB279AAE6C8F755,
     0x3F93CC4AC6CDAF4B, 0x3FBE836EB4E98138, 0x3FEE68427418D691],
    dtype=np.uint64,
).view(np.float64)  # fmt: skip
_XYZ2SRGB_D65 = np.array(
    [0x4009EC804102FF8F, 0xBFF8982A9930BE0E, 0xBFDFE7FF583A53B9,
     0xBFEF042528AE74F3, 0x3FFE040F23897204, 0x3FA546D3F9E7B80B,
     0x3FAC7DE5082CF52C, 0xBFCA1E14BDFD2631, 0x3FF0EABEF06B3786],
    dtype=np.uint64,
).view(np.float64)  # fmt: skip
_D65 = np.array([0x3FEE6A22B3892EE8, 0x3FF0000000000000, 0x3FF16B8950763A19], dtype=np.uint64).view(
    np.float64
)


def _apply_gamma(x: np.ndarray) -> np.ndarray:
    """sRGB -> linear for float32 ``x`` in [0, 1], in double, returned as float32 (OpenCV's)."""
    xd = x.astype(np.float64)
    lin = np.where(xd <= 809 / 20000, xd / (323 / 25), ((xd + 11 / 200) / (1 + 11 / 200)) ** 2.4)
    return lin.astype(np.float32)


def _apply_inv_gamma(x: np.ndarray) -> np.ndarray:
    """Linear -> sRGB for float32 ``x`` in [0, 1], in double, returned as float32."""
    xd = x.astype(np.float64)
    srgb = np.where(
        xd <= 7827 / 2500000, xd * (323 / 25), xd ** (1 / 2.4) * (1 + 11 / 200) - 11 / 200
    )
    return srgb.astype(np.float32)


def _f_of_t(x: np.ndarray) -> np.ndarray:
    """CIE f(t) in float32: cube root above (6/29)^3, linear below."""
    f32 = np.float32
    lthresh, lscale, lbias = f32(216) / f32(24389), f32(841) / f32(108), f32(16) / f32(116)
    lin = (x.astype(np.float64) * np.float64(lscale) + np.float64(lbias)).astype(f32)  # fused
    return np.where(x < lthresh, lin, np.cbrt(x)).astype(f32)


@functools.cache
def _tables() -> dict[str, np.ndarray]:
    """Build OpenCV's integer lookup tables and fixed-point coefficients (int64 arrays)."""
    f32 = np.float32
    i256 = np.arange(256)
    srgb_gamma = np.rint(f32(255 * (1 << _GAMMA_SHIFT)) * _apply_gamma(i256.astype(f32) / f32(255)))

    cb_scale = f32(1) / (f32(255) * f32(1 << _GAMMA_SHIFT))
    x = cb_scale * np.arange(_CBRT_TAB_SIZE).astype(f32)
    cbrt_tab = np.rint(f32(1 << _LAB_SHIFT2) * _f_of_t(x))
    # OpenCV's soft-float cbrt lands one ulp below the correctly rounded cube root here, which
    # flips the rounding of these two entries (found by comparing all 2^24 colours with cv2).
    cbrt_tab[[49, 324]] -= 1

    rgb2xyz = np.rint((1 << _LAB_SHIFT) * _SRGB2XYZ_D65.reshape(3, 3) / _D65[:, None])

    # Lab2RGBinteger: L -> (y, f(y)) table.
    y_of_l = np.empty(256)
    fy_of_l = np.empty(256)
    low = i256 <= 20
    il = i256.astype(f32)
    y_of_l[low] = np.rint(f32(1) * (il[low] * f32(_BASE * 20 * 9)) / f32(17 * 29 * 29 * 29))
    fy_of_l[low] = np.rint(
        f32(_BASE) * (f32(16) / f32(116) + (il[low] * f32(5)) / f32(3 * 17 * 29))
    )
    fy = (il[~low] * f32(100 * _BASE)) / f32(255 * 116) + f32(16 * _BASE) / f32(116)
    fy_of_l[~low] = np.rint(fy)
    y_of_l[~low] = np.rint(fy * fy * fy / f32(_BASE * _BASE))

    # f(x) -> x for the a/b channels, in integer arithmetic (C truncating division).
    i = np.arange(_MIN_AB, _BASE * 9 // 4 + _MIN_AB, dtype=np.int64)
    lin_part = _c_div(i * 108, 841) - _BASE * 16 // 116 * 108 // 841
    cube_part = _c_div(_c_div(i * i, _BASE) * i, _BASE)
    ab_to_xz = np.where(i <= 3390, lin_part, cube_part)

    inv_x = (f32(1) / f32(_INV_GAMMA_TAB_SIZE)) * np.arange(_INV_GAMMA_TAB_SIZE).astype(f32)
    srgb_inv_gamma = np.rint(f32(255) * _apply_inv_gamma(inv_x))

    xyz2rgb = np.rint((1 << _LAB_SHIFT) * _XYZ2SRGB_D65.reshape(3, 3).T * _D65[:, None]).T
    return {
        "srgb_gamma": srgb_gamma.astype(np.int64),
        "cbrt": cbrt_tab.astype(np.int64),
        "rgb2xyz": rgb2xyz.astype(np.int64),
        "y_of_l": y_of_l.astype(np.int64),
        "fy_of_l": fy_of_l.astype(np.int64),
        "ab_to_xz": ab_to_xz.astype(np.int64),
        "srgb_inv_gamma": srgb_inv_gamma.astype(np.int64),
        "xyz2rgb": xyz2rgb.astype(np.int64),
    }


def _c_div(a: np.ndarray, b: int) -> np.ndarray:
    """Integer division truncating toward zero, as in C."""
    return np.sign(a) * (np.abs(a) // b)


@functools.cache
@functools.cache
def _device_tables(device: torch.device) -> dict[str, torch.Tensor]:
    """The integer tables as int32 tensors on ``device``, plus the separable RGB -> XYZ shares.

    ``xyz_shares`` is ``(3, 768)``: row o, entry ``256*c + v`` is channel c's share of the
    fixed-point XYZ component o, ``coeff[o, c] * gamma[v]``. The sum is separable, so it becomes
    three look-ups and two additions; OpenCV's rounding offset is folded into the red entries.
    """
    tab = _tables()
    shares = tab["rgb2xyz"][:, :, None] * tab["srgb_gamma"][None, None, :]  # (3 out, 3 in, 256)
    shares[:, 0, :] += 1 << (_LAB_SHIFT - 1)
    tab = {**tab, "xyz_shares": shares.reshape(3, 768)}
    return {k: torch.from_numpy(v).to(device=device, dtype=torch.int32) for k, v in tab.items()}


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an int32 ``index`` of any shape (no int64 copy of the index)."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def _descale(x: torch.Tensor, shift: int) -> torch.Tensor:
    """OpenCV's CV_DESCALE: round-half-up right shift (arithmetic, so floors negatives)."""
    return (x + (1 << (shift - 1))) >> shift


def _cbrt_of_xyz(rgb: torch.Tensor, components: tuple[int, ...]) -> list[torch.Tensor]:
    """OpenCV's ``LabCbrtTab_b[X]`` (and/or Y, Z) for uint8 RGB ``(..., 3)``; int32 each."""
    tab = _device_tables(rgb.device)
    r, g, b = rgb.int().unbind(-1)
    g, b = g + 256, b + 512
    out = []
    for o in components:
        shares = tab["xyz_shares"][o]
        raw = _lookup(shares, r) + _lookup(shares, g) + _lookup(shares, b)
        out.append(_lookup(tab["cbrt"], raw >> _LAB_SHIFT))
    return out


def _lightness(fy: torch.Tensor) -> torch.Tensor:
    l_scale = (116 * 255 + 50) // 100
    l_shift = -((16 * 255 * (1 << _LAB_SHIFT2) + 50) // 100)
    return _descale(l_scale * fy + l_shift, _LAB_SHIFT2)


def rgb_to_lab_u8(rgb: torch.Tensor) -> torch.Tensor:
    """Convert uint8 RGB to OpenCV 8-bit LAB, bit-exact with ``cv2.COLOR_RGB2LAB``.

    Args:
        rgb: uint8 tensor ``(..., 3)`` of sRGB values.

    Returns:
        uint8 tensor ``(..., 3)``: L x 255/100, a* + 128, b* + 128.
    """
    fx, fy, fz = _cbrt_of_xyz(rgb, (0, 1, 2))
    ab_shift = 128 * (1 << _LAB_SHIFT2)
    a = _descale(500 * (fx - fy) + ab_shift, _LAB_SHIFT2)
    b = _descale(200 * (fy - fz) + ab_shift, _LAB_SHIFT2)
    return torch.stack([_lightness(fy), a, b], dim=-1).clamp_(0, 255).to(torch.uint8)


def lightness_u8(rgb: torch.Tensor) -> torch.Tensor:
    """OpenCV's 8-bit L channel (L* x 255/100) of uint8 RGB ``(..., 3)``, as int32 ``(...)``."""
    (fy,) = _cbrt_of_xyz(rgb, (1,))
    return _lightness(fy).clamp_(0, 255)


def lab_u8_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Convert OpenCV 8-bit LAB to uint8 RGB, bit-exact with ``cv2.COLOR_LAB2RGB``.

    Args:
        lab: uint8 tensor ``(..., 3)`` in OpenCV's 8-bit LAB convention.

    Returns:
        uint8 tensor ``(..., 3)`` of sRGB values.
    """
    tab = _device_tables(lab.device)
    lum, a, b = lab.int().unbind(-1)
    y = _lookup(tab["y_of_l"], lum)
    ify = _lookup(tab["fy_of_l"], lum)
    # OpenCV's fixed-point approximations of a*BASE/500 and b*BASE/200.
    adiv = ((5 * 53687) * a + (1 << 7)) >> 13
    bdiv = (41943 * b + (1 << 4)) >> 9
    x = _lookup(tab["ab_to_xz"], ify + adiv - (128 * _BASE // 500 + _MIN_AB))
    z = _lookup(tab["ab_to_xz"], ify - bdiv + (128 * _BASE // 200 - 1 - _MIN_AB))
    shift = _LAB_SHIFT + (_BASE_SHIFT - _INV_GAMMA_SHIFT)
    c = _tables()["xyz2rgb"].tolist()  # python ints: no device sync
    rgb = [
        _descale(c[o][0] * x + c[o][1] * y + c[o][2] * z, shift).clamp_(0, _INV_GAMMA_TAB_SIZE - 1)
        for o in range(3)
    ]
    return _lookup(tab["srgb_inv_gamma"], torch.stack(rgb, dim=-1)).to(torch.uint8)


@functools.cache
def _below_threshold_table(threshold: float, device: torch.device) -> torch.Tensor:
    # staintools compares L / 255.0 < threshold in double; a 256-entry table keeps that exact.
    return torch.tensor([level / 255.0 < threshold for level in range(256)], device=device)


@functools.cache
def _dark_y_limit(threshold: float) -> int:
    """Smallest fixed-point Y sum whose lightness is not below ``threshold``.

    Lightness only grows with Y (the cube-root table is monotone), so "L/255 < threshold" is
    "Y sum < this limit": the mask needs no cube root or lightness arithmetic per pixel.
    """
    cbrt = torch.from_numpy(_tables()["cbrt"])
    lightness = _lightness(cbrt).clamp(0, 255)
    dark = torch.tensor([level / 255.0 < threshold for level in lightness.tolist()])
    first_light = int(dark.logical_not().nonzero()[0]) if not dark.all() else len(dark)
    return first_light << _LAB_SHIFT


def tissue_mask(rgb: torch.Tensor, luminosity_threshold: float) -> torch.Tensor:
    """Pixels darker than ``luminosity_threshold``, as staintools' luminosity tissue locator.

    Equal to ``cv2.cvtColor(rgb, COLOR_RGB2LAB)[..., 0] / 255.0 < luminosity_threshold``.

    Args:
        rgb: uint8 tensor ``(..., 3)``.
        luminosity_threshold: fraction of full lightness; staintools uses 0.8.

    Returns:
        bool tensor ``(...)``, True for tissue.
    """
    shares = _device_tables(rgb.device)["xyz_shares"][1]
    r, g, b = rgb.int().unbind(-1)
    y_sum = _lookup(shares, r) + _lookup(shares, g + 256) + _lookup(shares, b + 512)
    return y_sum < _dark_y_limit(float(luminosity_threshold))


def lightness_below(lightness: torch.Tensor, luminosity_threshold: float) -> torch.Tensor:
    """True where an 8-bit OpenCV lightness (0..255, any int dtype) is below the threshold."""
    table = _below_threshold_table(float(luminosity_threshold), lightness.device)
    return table.index_select(0, lightness.reshape(-1).int()).view(lightness.shape)
