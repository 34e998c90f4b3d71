"""Tissue contrast of CT (HU), FDG PET (SUV) and T1w/T2w MR, and the image formation models.

The primary tumour is built to be hard on CT alone (10-20 HU over muscle, CT noise 10-18 HU) and easy on PET
(peak SUV 8-20 with a cooler core) and T2 (more than twice the muscle signal), which is the property the study
relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hnseg.synthetic import anatomy as an


@dataclass(frozen=True)
class Contrast:
    hu: np.ndarray  # per tissue code
    suv: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    ct_noise_hu: float
    tumour_ct_delta_hu: float
    tumour_suv_peak: float
    node_suv_peaks: tuple[float, ...]
    mr_noise: float

    def to_json(self) -> dict:
        names = an.TISSUE_NAMES
        return {
            "ct_hu": {names[c]: round(float(v), 2) for c, v in enumerate(self.hu)},
            "pet_suv_before_psf": {names[c]: round(float(v), 3) for c, v in enumerate(self.suv)},
            "mr_t1": {names[c]: round(float(v), 1) for c, v in enumerate(self.t1)},
            "mr_t2": {names[c]: round(float(v), 1) for c, v in enumerate(self.t2)},
            "ct_noise_sigma_hu": round(self.ct_noise_hu, 2),
            "tumour_ct_delta_over_muscle_hu": round(self.tumour_ct_delta_hu, 2),
            "tumour_suv_peak": round(self.tumour_suv_peak, 3),
            "node_suv_peaks": [round(v, 3) for v in self.node_suv_peaks],
            "mr_rician_sigma": round(self.mr_noise, 2),
        }


def draw_contrast(rng: np.random.Generator) -> Contrast:
    u = rng.uniform
    n = an.N_CODES
    hu, suv, t1, t2 = (np.zeros(n) for _ in range(4))
    muscle = u(40, 60)
    delta = u(10, 20)
    blood = u(1.5, 2.0)
    background = u(0.5, 1.0)
    table = {
        # code: (HU, SUV, T1, T2)
        an.OUTSIDE: (-1000, 0.0, 0, 0),
        an.FAT: (u(-110, -90), u(0.3, 0.45), 1000, 750),
        an.MUSCLE: (muscle, background, 380, 220),
        an.BRAIN: (35, u(7, 10), 560, 620),
        an.BONE: (u(1000, 1400), 0.4, 40, 30),
        an.MARROW: (u(250, 400), u(1.3, 1.9), 720, 480),
        an.DISC: (80, 0.5, 300, 700),
        an.CSF: (8, 0.25, 180, 1500),
        an.CORD: (35, background * 1.1, 500, 420),
        an.PAROTID: (u(0, 20), u(2, 3), 720, 520),
        an.SUBMANDIBULAR: (40, u(2, 3), 480, 450),
        an.TONSIL: (muscle + 5, u(2, 3), 420, 560),
        an.ARTERY: (45, blood, 50, 60),
        an.VEIN: (40, blood, 120, 180),
        an.AIR: (-1000, 0.0, 0, 0),
        an.TUMOUR: (muscle + delta, u(8, 20), 380 * u(0.85, 1.0), u(500, 640)),
    }
    for k in range(an.MAX_NODES):
        table[an.NODE + k] = (muscle + u(5, 15), u(4, 10), 350, u(480, 600))
    gain = u(0.85, 1.15)
    for code, (h, s, a, b) in table.items():
        hu[code], suv[code], t1[code], t2[code] = h, s, a * gain, b * gain
    return Contrast(
        hu=hu,
        suv=suv,
        t1=t1,
        t2=t2,
        ct_noise_hu=float(u(10, 18)),
        tumour_ct_delta_hu=float(delta),
        tumour_suv_peak=float(suv[an.TUMOUR]),
        node_suv_peaks=tuple(float(suv[an.NODE + k]) for k in range(an.MAX_NODES)),
        mr_noise=float(u(8, 16)),
    )


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Gaussian-correlated noise with unit standard deviation."""
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, sigma_px, mode="wrap")
    impulse = np.zeros((9,) * len(shape), dtype=np.float64)
    impulse[(4,) * len(shape)] = 1.0
    norm = np.sqrt(np.sum(ndimage.gaussian_filter(impulse, sigma_px, mode="constant") ** 2))
    return smooth / np.float32(norm)


# ----------------------------------------------------------------------------------------------- CT


def ct_slice(labels: np.ndarray, contrast: Contrast, rng: np.random.Generator) -> np.ndarray:
    """One CT slice in HU (float32): tissue means, a little partial-volume blur, correlated noise."""
    hu = contrast.hu[labels].astype(np.float32)
    hu = ndimage.gaussian_filter(hu, 0.5, mode="nearest")
    hu += contrast.ct_noise_hu * _unit_noise(rng, labels.shape, 0.7)
    return hu


# ----------------------------------------------------------------------------------------------- PET


def suv_values(labels: np.ndarray, rho: np.ndarray, contrast: Contrast) -> np.ndarray:
    """Activity in SUV before the scanner's PSF: tissue values, tumour with a cooler core, graded nodes."""
    out = contrast.suv[labels].astype(np.float32)
    tumour = labels == an.TUMOUR
    if tumour.any():
        r = rho[tumour]
        out[tumour] = contrast.tumour_suv_peak * (0.6 + 0.4 * np.exp(-(((r - 0.6) / 0.3) ** 2)))
    for k in range(an.MAX_NODES):
        node = labels == an.NODE + k
        if node.any():
            out[node] = contrast.node_suv_peaks[k] * (0.75 + 0.25 * (1.0 - rho[node] ** 2))
    return out


def pet_blur_and_noise(
    suv: np.ndarray, spacing_zyx: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """6.5 mm FWHM Gaussian PSF plus mild multiplicative and additive noise (float32, >= 0)."""
    sigma = [6.5 / 2.3548 / s for s in spacing_zyx]
    blurred = ndimage.gaussian_filter(suv.astype(np.float32), sigma, mode="nearest")
    noise_mult = _unit_noise(rng, suv.shape, 0.6)
    noise_add = _unit_noise(rng, suv.shape, 0.6)
    noisy = blurred * (1.0 + 0.06 * noise_mult) + 0.03 * noise_add
    return np.clip(noisy, 0.0, None).astype(np.float32)


# ----------------------------------------------------------------------------------------------- MR


def mr_values(labels: np.ndarray, rho: np.ndarray, contrast: Contrast, weighting: str) -> np.ndarray:
    table = contrast.t1 if weighting == "T1" else contrast.t2
    out = table[labels].astype(np.float32)
    if weighting == "T2":
        tumour = labels == an.TUMOUR
        out[tumour] *= 1.0 + 0.15 * np.exp(-((rho[tumour] / 0.4) ** 2))
    return out


def mr_slice(values: np.ndarray, bias: np.ndarray, contrast: Contrast, rng: np.random.Generator) -> np.ndarray:
    """One MR slice (uint16, 12 bit): in-plane blur, bias field, Rician noise."""
    img = ndimage.gaussian_filter(values, 0.5, mode="nearest") * bias
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * contrast.mr_noise
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * contrast.mr_noise
    mag = np.sqrt((img + n1) ** 2 + n2**2)
    return np.clip(np.rint(mag), 0, 4095).astype(np.uint16)
