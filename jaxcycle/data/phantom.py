"""A deterministic, brain-like MR/CT phantom: paired volumes for tests and the demo.

Each subject is an analytic head: scalp (skin and subcutaneous fat), a skull with outer and
inner tables of cortical bone around fatty diploe, subarachnoid CSF, a folded cortical ribbon of
grey matter with sulci and an interhemispheric fissure, white matter, lateral and third
ventricles, deep grey nuclei (caudate, thalamus, lentiform nucleus) and, in some subjects, a
lesion with surrounding oedema. A subject's seed sets its size, pose, smooth deformation,
folding pattern, ventricle size, skull thickness, bone density and lesion, so subjects differ
while the anatomy stays plausible.

The tissue map is rendered twice: as T1-weighted-like MR (white matter brighter than grey
matter, CSF and cortical bone dark, fat bright; a smooth bias field and Rician noise) and as CT
in Hounsfield units (air -1000, fat -90, CSF ~8, white matter ~28, grey matter ~40, diploe
400-800, cortical bone 1100-1700; a slight blur for partial volume and Gaussian noise). Both
come from the same map, so MR and CT are perfectly registered pairs.

Arrays are axial slices (K, S, S) in the radiological display convention used throughout
`jaxcycle.data`: row 0 is anterior, column 0 the patient's right, slice 0 the most inferior.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from jaxcycle.data.nifti import slices_to_volume

FIELD_OF_VIEW_MM = 240.0
Z_RANGE_MM = (-22.0, 52.0)  # the third ventricle to below the vertex

# tissue labels
AIR, SKIN, FAT, BONE, DIPLOE, CSF, GREY, WHITE, DEEP_GREY, VENTRICLE, LESION, OEDEMA = range(12)
LABEL_NAMES = (
    "air",
    "skin",
    "fat",
    "bone",
    "diploe",
    "csf",
    "grey",
    "white",
    "deep_grey",
    "ventricle",
    "lesion",
    "oedema",
)

# T1-weighted-like signal (arbitrary units) and CT numbers (HU) per label
_MR_T1 = np.array([0, 520, 900, 50, 620, 170, 470, 720, 540, 140, 330, 410], np.float32)
_CT_HU = np.array([-1000, 45, -90, 1400, 600, 8, 40, 28, 37, 5, 22, 16], np.float32)


@dataclass(frozen=True)
class PhantomVolume:
    """One subject: paired MR and CT axial slices, their tissue map and geometry.

    mr: (K, S, S) float32, T1-like signal, non-negative arbitrary units (up to ~1000).
    ct: (K, S, S) float32, Hounsfield units.
    labels: (K, S, S) uint8 tissue labels (see `LABEL_NAMES`).
    spacing: (row, column, slice) spacing in mm.
    affine: the 4x4 voxel -> RAS+ mm matrix of the NIfTI volume `nifti.slices_to_volume` makes
        of these slices.
    """

    subject: str
    mr: np.ndarray
    ct: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray


def _plane_waves(rng: np.random.Generator, n: int, wavelength: float, spread: float = 0.25):
    """Random plane waves (wave vectors, phases) for a smooth, band-limited random field."""
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = 2 * np.pi / (wavelength * rng.uniform(1 - spread, 1 + spread, n))
    return directions * lengths[:, None], rng.uniform(0, 2 * np.pi, n)


def _field(points: tuple[np.ndarray, ...], waves) -> np.ndarray:
    """Sum of cosines over the plane waves at the points, unit variance."""
    vectors, phases = waves
    x, y, z = points
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    out = np.zeros(shape, np.float32)
    arg = np.empty(shape, np.float32)
    for (kx, ky, kz), phase in zip(vectors.tolist(), phases.tolist(), strict=True):
        np.multiply(x, kx, out=arg)
        arg += ky * y
        arg += kz * z + phase
        out += np.cos(arg, out=arg)
    return out * np.float32(np.sqrt(2.0 / len(phases)))


def _ellipsoid(points, centre, axes, yaw_deg: float = 0.0) -> np.ndarray:
    """Normalised radius (< 1 inside) of an ellipsoid, turned by `yaw_deg` about the z axis."""
    x, y, z = (p - c for p, c in zip(points, centre, strict=True))
    if yaw_deg:
        t = np.deg2rad(yaw_deg)
        x, y = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    return np.sqrt((x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2)


def _grid(size: int, slices: int) -> tuple[tuple[np.ndarray, ...], tuple[float, float, float]]:
    """Patient coordinates (RAS mm) of the voxel centres, broadcastable (K, S, S)."""
    step = FIELD_OF_VIEW_MM / size
    centres = (np.arange(size, dtype=np.float32) + 0.5) * step - FIELD_OF_VIEW_MM / 2
    z0, z1 = Z_RANGE_MM
    dz = (z1 - z0) / slices
    z = (z0 + (np.arange(slices, dtype=np.float32) + 0.5) * dz)[:, None, None]
    y = centres[::-1][None, :, None]  # row 0 anterior
    x = centres[::-1][None, None, :]  # column 0 the patient's right (RAS: largest x)
    return (x, y, z), (step, step, dz)


def tissue_map(subject_seed: int | tuple[int, ...], size: int = 64, slices: int = 16):
    """The tissue labels (K, S, S) of one subject and the voxel spacing (row, col, slice) mm."""
    rng = np.random.default_rng(subject_seed)
    (x, y, z), spacing = _grid(size, slices)
    x, y, z = np.broadcast_arrays(x, y, z)
    # pose: a small turn about z and a shift; then a smooth deformation (a few mm)
    yaw = np.deg2rad(rng.uniform(-6, 6))
    shift = rng.uniform(-4, 4, 3)
    xr = np.cos(yaw) * x + np.sin(yaw) * y - shift[0]
    yr = -np.sin(yaw) * x + np.cos(yaw) * y - shift[1]
    zr = z - shift[2]
    deform = [_plane_waves(rng, 6, 140.0) for _ in range(3)]
    amplitude = rng.uniform(1.5, 3.5)
    p = (
        xr + amplitude * _field((xr, yr, zr), deform[0]),
        yr + amplitude * _field((xr, yr, zr), deform[1]),
        zr + amplitude * _field((xr, yr, zr), deform[2]),
    )
    px, py, pz = p

    # head: an ellipsoid a little wider at the back, centred below the ventricles
    scale = rng.uniform(0.93, 1.07)
    ax, ay, az = 73 * scale * rng.uniform(0.96, 1.04), 93 * scale, 92 * scale
    half_width = ax * (1 - 0.07 * py / ay)
    centre_z = -18.0
    rho = np.sqrt((px / half_width) ** 2 + (py / ay) ** 2 + ((pz - centre_z) / az) ** 2)
    radius = np.sqrt(px**2 + py**2 + (pz - centre_z) ** 2)
    depth = (1 - rho) * radius / np.maximum(rho, 1e-6)  # mm below the skin, along the ray

    skin, fat = 1.6, rng.uniform(3.5, 5.5)
    wobble = 0.8 * _field(p, _plane_waves(rng, 8, 60.0))
    table = rng.uniform(1.6, 2.3)
    diploe = rng.uniform(2.5, 4.5) + wobble
    skull_out = skin + fat
    skull_in = skull_out + 2 * table + diploe
    brain = skull_in + rng.uniform(1.5, 3.0)

    labels = np.full(x.shape, AIR, np.uint8)
    labels[depth >= 0] = SKIN
    labels[depth >= skin] = FAT
    labels[depth >= skull_out] = BONE
    labels[(depth >= skull_out + table) & (depth < skull_in - table)] = DIPLOE
    labels[depth >= skull_in] = CSF

    # cortex: a ribbon about 3 mm thick, folded by the zero set of a random field (sulci)
    inside = depth >= brain
    folds = _field(p, _plane_waves(rng, 32, rng.uniform(17, 22)))
    cortex = 3.2
    gyral_depth = depth - brain
    labels[inside] = WHITE
    grey = inside & ((gyral_depth < cortex) | ((np.abs(folds) < 0.7) & (gyral_depth < 20)))
    labels[grey] = GREY
    sulcus = inside & (np.abs(folds) < 0.12) & (gyral_depth < 17)
    labels[sulcus] = CSF
    # interhemispheric fissure with grey matter on both banks, above the corpus callosum
    midline = px - 1.5 * _field(p, _plane_waves(rng, 4, 90.0))
    high = pz > 22 - 8 * np.cos(np.clip(py / ay, -1, 1) * np.pi / 2)
    labels[inside & high & (np.abs(midline) < 3.6)] = GREY
    labels[inside & (pz > -10) & (np.abs(py) < 0.8 * ay) & (np.abs(midline) < 1.0) & high] = CSF

    # deep grey nuclei
    for side in (-1, 1):
        for centre, axes, yaw_deg in (
            ((side * 13, 15, 6), (5, 9, 8), side * -15),  # caudate head
            ((side * 9, -9, -4), (8, 13, 9), side * 10),  # thalamus
            ((side * 22, 3, -2), (6, 15, 9), side * -8),  # lentiform nucleus
        ):
            labels[(_ellipsoid(p, centre, axes, yaw_deg) < 1) & inside] = DEEP_GREY

    # lateral ventricles (frontal horns, bodies, atria bending outwards), third ventricle
    v = rng.uniform(0.8, 1.45)
    for side in (-1, 1):
        body = _ellipsoid(p, (side * 6.5, 2, 9), (3.6 * v, 27, 7 * v**0.5), side * -6)
        atrium = _ellipsoid(p, (side * 15, -24, 5), (5 * v, 10, 8 * v**0.5), side * 30)
        horn = _ellipsoid(p, (side * 9, 24, 4), (4 * v, 8, 6 * v**0.5), side * -20)
        labels[(np.minimum(np.minimum(body, atrium), horn) < 1) & inside] = VENTRICLE
    labels[(_ellipsoid(p, (0, -4, -8), (1.3 * v, 11, 9), 0) < 1) & inside] = VENTRICLE
    labels[inside & (np.abs(px) < 1.2) & (np.abs(py - 2) < 22) & (np.abs(pz - 9) < 6)] = WHITE

    # a lesion with oedema in about half of the subjects, in one hemisphere's white matter
    if rng.random() < 0.5:
        centre = (
            rng.choice([-1, 1]) * rng.uniform(20, 38),
            rng.uniform(-45, 45),
            rng.uniform(0, 40),
        )
        r = rng.uniform(6, 13)
        lesion = _ellipsoid(p, centre, (r, r * 1.2, r))
        labels[inside & (lesion < 1.7) & (labels != CSF) & (labels != VENTRICLE)] = OEDEMA
        labels[inside & (lesion < 1.0)] = LESION
    return labels, spacing


def render_mr(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """T1-like MR signal of a tissue map: tissue means, a smooth bias field, Rician noise."""
    clean = _MR_T1[labels] * rng.uniform(0.9, 1.1, len(_MR_T1)).astype(np.float32)[labels]
    clean = ndimage.gaussian_filter(clean, sigma=(0.3, 0.6, 0.6))
    k, h, w = labels.shape
    points = np.meshgrid(
        np.linspace(-1, 1, k, dtype=np.float32),
        np.linspace(-1, 1, h, dtype=np.float32),
        np.linspace(-1, 1, w, dtype=np.float32),
        indexing="ij",
    )
    bias = 1 + 0.1 * _field(tuple(points[::-1]), _plane_waves(rng, 4, 3.0))
    signal = clean * bias
    sigma = 14.0
    real = signal + rng.normal(0, sigma, labels.shape)
    imag = rng.normal(0, sigma, labels.shape)
    return np.hypot(real, imag).astype(np.float32)


def render_ct(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CT numbers (HU) of a tissue map: per-subject bone density, partial volume, noise."""
    hu = _CT_HU.copy()
    hu[BONE] = rng.uniform(1100, 1700)
    hu[DIPLOE] = rng.uniform(400, 800)
    values = hu[labels]
    values = ndimage.gaussian_filter(values, sigma=(0.3, 0.7, 0.7))
    values += rng.normal(0, 4.0, labels.shape)
    return np.maximum(values, -1024).astype(np.float32)


def phantom_volume(subject: int, *, size: int = 64, slices: int = 16, seed: int = 0):
    """One phantom subject as `PhantomVolume`; the same (seed, subject) gives the same arrays."""
    if size < 8 or slices < 1:
        raise ValueError(f"phantom size must be >= 8 and slices >= 1 (got {size}, {slices})")
    labels, spacing = tissue_map((seed, subject, 0), size, slices)
    rng = np.random.default_rng((seed, subject, 1))
    mr = render_mr(labels, rng)
    ct = render_ct(labels, rng)
    row, col, dz = spacing
    affine = np.diag([col, row, dz, 1.0])
    # voxel (i, j, k) of the RAS volume: x = -FOV/2 + (i + 0.5) col, the same for y; z from Z_RANGE
    affine[:3, 3] = (
        -FIELD_OF_VIEW_MM / 2 + col / 2,
        -FIELD_OF_VIEW_MM / 2 + row / 2,
        Z_RANGE_MM[0] + dz / 2,
    )
    return PhantomVolume(f"subject-{subject:03d}", mr, ct, labels, spacing, affine)


def write_phantom(
    out_dir: str | os.PathLike,
    *,
    subjects: int = 4,
    size: int = 64,
    slices: int = 16,
    seed: int = 0,
    overwrite: bool = False,
) -> list[Path]:
    """Writes out_dir/mr/subject-NNN.nii.gz and out_dir/ct/subject-NNN.nii.gz (int16; MR in
    scanner-like units, CT in HU), RAS-oriented, ready for `jaxcycle data ingest`."""
    if subjects < 1:
        raise ValueError(f"subjects must be at least 1 (got {subjects})")
    out_dir = Path(out_dir)
    names = [f"subject-{s:03d}.nii.gz" for s in range(subjects)]
    targets = [out_dir / m / n for n in names for m in ("mr", "ct")]
    if not overwrite:
        existing = [t for t in targets if t.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} already exists (use --overwrite to replace it)")
    written = []
    for s, name in enumerate(names):
        volume = phantom_volume(s, size=size, slices=slices, seed=seed)
        for modality, values in (("mr", volume.mr), ("ct", volume.ct)):
            data = slices_to_volume(np.rint(values)).astype(np.int16)
            image = nib.Nifti1Image(data, volume.affine)
            image.header.set_xyzt_units("mm")
            image.header.set_qform(volume.affine, code=1)
            image.header.set_sform(volume.affine, code=1)
            path = out_dir / modality / name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.tmp.nii.gz")
            nib.save(image, tmp)
            os.replace(tmp, path)
            written.append(path)
    return written
