"""NIfTI volumes in: canonical RAS orientation, axial slices in the display convention.

A volume is reoriented with `nibabel.as_closest_canonical` (axes flipped and permuted, never
resampled) so that voxel axes i, j, k point to the patient's Right, Anterior and Superior. Axial
slice k is then shown as an axial DICOM image is: row 0 anterior, column 0 the patient's right
(slice[r, c] = data[X - 1 - c, Y - 1 - r, k]). `slices_to_volume` is the exact inverse, used by
the NIfTI writer to put translated slices back into the source's own voxel order.

4D files: a single volume (time axis of length 1) is read as 3D; with more volumes, pass
`frame` (ingest's `--nifti-frame`) to choose one, otherwise the file is refused. 2D files are
one slice; five or more dimensions are refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from jaxcycle.data.volume import DataError, Volume, VolumeRef

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_file(path: Path) -> bool:
    """A .nii or .nii.gz file name."""
    name = path.name.lower()
    return name.endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """The file name without .nii or .nii.gz."""
    return re.sub(r"\.nii(\.gz)?$", "", Path(path).name, flags=re.IGNORECASE)


def volume_to_slices(data: np.ndarray) -> np.ndarray:
    """RAS-canonical (X, Y, Z) voxels -> (Z, Y, X) axial slices, row 0 anterior, col 0 right."""
    return np.ascontiguousarray(np.transpose(data[::-1, ::-1, :], (2, 1, 0)))


def slices_to_volume(slices: np.ndarray) -> np.ndarray:
    """The inverse of `volume_to_slices`: (Z, Y, X) slices -> (X, Y, Z) RAS-canonical voxels."""
    return np.ascontiguousarray(np.transpose(slices, (2, 1, 0))[::-1, ::-1, :])


def open_nifti(path: str | os.PathLike):
    """The nibabel image (header only, pixels not read); DataError naming the file."""
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as e:
        raise DataError(f"{path}: not a readable NIfTI file ({e})") from None


MAX_VOXELS = 2**30  # per volume (4 GiB as float32): far beyond any scan; a larger header is refused


def _spatial_shape(img, path, frame: int | None) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in img.shape)
    voxels = int(np.prod(shape[:3], dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise DataError(
            f"{path}: header claims a {' x '.join(map(str, shape[:3]))} volume ({voxels:,} "
            f"voxels), more than the {MAX_VOXELS:,} a volume may have (corrupt header?)"
        )
    if len(shape) == 2:
        return (*shape, 1)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 4:
        if shape[3] == 1:
            return shape[:3]  # type: ignore[return-value]
        if frame is None:
            raise DataError(
                f"{path}: 4D volume {shape} ({shape[3]} volumes); choose one with --nifti-frame N"
            )
        if not 0 <= frame < shape[3]:
            raise DataError(f"{path}: frame {frame} out of range (the file has {shape[3]})")
        return shape[:3]  # type: ignore[return-value]
    raise DataError(f"{path}: {len(shape)}-dimensional image {shape}; expected a 3D volume")


def nifti_ref(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    patient: str | None = None,
    series: str | None = None,
) -> VolumeRef:
    """A `VolumeRef` from the header: patient and series default to the file name's stem."""
    img = open_nifti(path)
    _, _, slices = _spatial_shape(img, path, frame)
    stem = nifti_stem(path)
    patient = patient or stem
    return VolumeRef(
        format="nifti",
        source=str(path),
        files=(str(path),),
        patient=patient,
        series=series or stem,
        key=patient,
        slices=slices,
        loader=lambda: load_nifti(path, frame=frame),
    )


def load_nifti(path: str | os.PathLike, *, frame: int | None = None) -> Volume:
    """Reads a NIfTI volume (scaling applied) as axial slices in the display convention."""
    original = img = open_nifti(path)
    _spatial_shape(img, path, frame)
    try:
        if img.ndim == 4:
            img = img.slicer[..., frame or 0]
        elif img.ndim == 2:
            img = nib.Nifti1Image(np.asanyarray(img.dataobj)[..., None], img.affine, img.header)
        canonical = nib.as_closest_canonical(img)
        data = canonical.get_fdata(dtype=np.float32)
    except DataError:
        raise
    except Exception as e:  # truncated or corrupt data
        raise DataError(f"{path}: corrupt or truncated NIfTI data ({e})") from None
    zooms = [float(z) for z in canonical.header.get_zooms()[:3]]
    return Volume(
        values=volume_to_slices(data),
        spacing=(zooms[1], zooms[0], zooms[2]),
        slice_files=[str(path)] * data.shape[2],
        geometry={
            "affine": np.asarray(original.affine, dtype=np.float64).tolist(),
            "canonical_affine": np.asarray(canonical.affine, dtype=np.float64).tolist(),
            "shape": [int(n) for n in original.shape],
            "frame": frame,
        },
    )
