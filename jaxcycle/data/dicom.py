"""DICOM files and series in: headers, series grouping, slice order, pixels in physical units.

Files are grouped into series by SeriesInstanceUID, and a series' slices are ordered by their
position along the slice normal (ImagePositionPatient . (row x column direction)), else by
InstanceNumber, else by file name. Pixels go through the modality LUT (RescaleSlope and
RescaleIntercept), so CT arrives in HU. Compressed transfer syntaxes decode where pydicom can
(RLE always; JPEG and JPEG 2000 through Pillow; JPEG-LS and others with pylibjpeg or gdcm);
where it cannot, the error names the file and the transfer syntax. A multi-frame file is one
volume, its frames the slices. Slices keep their stored orientation (for a standard axial
series: row 0 anterior, column 0 the patient's right).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from jaxcycle.data.volume import DataError, Volume, VolumeRef

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def is_dicom_file(path: Path) -> bool:
    """A DICOM suffix, or no suffix and the 'DICM' marker at byte 128 (Part 10 files)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_header(path: str | os.PathLike):
    """The dataset without its pixel data; DataError naming the file if it is not an image."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file (no DICM marker or file meta)") from None
    except Exception as e:  # truncated or corrupt header
        raise DataError(f"{path}: corrupt or truncated DICOM header ({e})") from None
    if "Rows" not in ds or "Columns" not in ds:
        sop = ds.get("SOPClassUID", "unknown")
        name = getattr(sop, "name", sop)
        raise DataError(f"{path}: DICOM without an image (SOP class {name})")
    return ds


def _orientation(ds) -> np.ndarray | None:
    iop = ds.get("ImageOrientationPatient")
    return None if iop is None or len(iop) != 6 else np.asarray(iop, dtype=np.float64)


def _position(ds) -> np.ndarray | None:
    ipp = ds.get("ImagePositionPatient")
    return None if ipp is None or len(ipp) != 3 else np.asarray(ipp, dtype=np.float64)


def _order(headers: list, files: list[str]) -> list[int]:
    """Slice order: along the normal, else by InstanceNumber, else by file name."""
    orientations = [_orientation(h) for h in headers]
    positions = [_position(h) for h in headers]
    if all(o is not None for o in orientations) and all(p is not None for p in positions):
        normal = np.cross(orientations[0][:3], orientations[0][3:])
        return sorted(range(len(files)), key=lambda i: (float(positions[i] @ normal), files[i]))
    numbers = [h.get("InstanceNumber") for h in headers]
    if all(n is not None for n in numbers):
        return sorted(range(len(files)), key=lambda i: (int(numbers[i]), files[i]))
    return sorted(range(len(files)), key=lambda i: files[i])


def find_series(files: list[Path], *, patient_ids: dict[str, tuple[str, str]] | None = None):
    """Groups DICOM files into one `VolumeRef` per series, slices in order.

    patient_ids: optional {file: (patient, series)} that replaces the tags (a filename regex).
    Returns (volumes, errors): errors is [(file, message)] for files whose header is unusable.
    """
    groups: dict[str, list[tuple[str, object]]] = defaultdict(list)
    errors: list[tuple[str, str]] = []
    for path in files:
        try:
            ds = read_header(path)
        except DataError as e:
            errors.append((str(path), str(e)))
            continue
        uid = str(ds.get("SeriesInstanceUID") or f"folder:{Path(path).parent}")
        groups[uid].append((str(path), ds))
    volumes = []
    for uid, members in groups.items():
        paths = [m[0] for m in members]
        headers = [m[1] for m in members]
        order = _order(headers, paths)
        paths = [paths[i] for i in order]
        headers = [headers[i] for i in order]
        first = headers[0]
        patient = str(first.get("PatientID") or "") or Path(paths[0]).parent.name
        series = uid
        if patient_ids is not None:
            patient, series = patient_ids[paths[0]]
            series = series or uid
        frames = sum(int(h.get("NumberOfFrames") or 1) for h in headers)
        volumes.append(
            VolumeRef(
                format="dicom",
                source=paths[0],
                files=tuple(paths),
                patient=patient,
                series=series,
                key=patient,
                slices=frames,
                loader=lambda paths=tuple(paths): load_series(paths),
            )
        )
    volumes.sort(key=lambda v: (v.patient, v.source))
    return volumes, errors


def read_pixels(path: str | os.PathLike):
    """One file's pixels in physical units, (frames, H, W) float64, and its dataset."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        raise DataError(f"{path}: corrupt or truncated DICOM file ({e})") from None
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError(
            f"{path}: colour DICOM ({ds.get('PhotometricInterpretation')}) is not supported; "
            "MR and CT images have one sample per pixel"
        )
    try:
        stored = ds.pixel_array
    except Exception as e:
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        msg = " ".join(line.strip() for line in str(e).splitlines()[:3]) or type(e).__name__
        raise DataError(f"{path}: cannot read the pixel data ({name}): {msg}") from None
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    frames = int(ds.get("NumberOfFrames") or 1)
    if values.ndim == 2 and frames == 1:
        values = values[None]
    if values.ndim != 3:
        raise DataError(f"{path}: pixel array of shape {values.shape} is not a grey image")
    return values, ds


def load_series(files: tuple[str, ...]) -> Volume:
    """Reads a series' files (already in slice order) into a `Volume`."""
    slices, headers, slice_files = [], [], []
    for path in files:
        values, ds = read_pixels(path)
        if slices and values.shape[1:] != slices[0].shape[1:]:
            raise DataError(
                f"{path}: {values.shape[1]}x{values.shape[2]} pixels, but the series' first "
                f"file {files[0]} has {slices[0].shape[1]}x{slices[0].shape[2]}"
            )
        slices.append(values)
        headers.append(ds)
        slice_files += [path] * values.shape[0]
    first = headers[0]
    modality = str(first.get("Modality", "")).lower() or None
    spacing_rc = first.get("PixelSpacing") or first.get("ImagerPixelSpacing")
    row_mm, col_mm = (float(spacing_rc[0]), float(spacing_rc[1])) if spacing_rc else (np.nan,) * 2
    positions = [_position(h) for h in headers]
    orientation = _orientation(first)
    slice_mm = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or np.nan)
    known = len(headers) > 1 and orientation is not None and all(p is not None for p in positions)
    if known:
        normal = np.cross(orientation[:3], orientation[3:])
        gaps = np.diff([p @ normal for p in positions])
        same = np.flatnonzero(np.abs(gaps) < 1e-3)
        if len(same):
            i = int(same[0])
            raise DataError(
                f"{files[i + 1]}: at the same position as {files[i]} in series "
                f"{first.get('SeriesInstanceUID')}; several echoes or time points in one series "
                "are not supported"
            )
        slice_mm = float(np.median(gaps))
    geometry = {
        "orientation": None if orientation is None else orientation.tolist(),
        "positions": [None if p is None else p.tolist() for p in positions],
        "pixel_spacing": [row_mm, col_mm] if spacing_rc else None,
        "rescale": [
            [float(h.get("RescaleSlope", 1) or 1), float(h.get("RescaleIntercept", 0) or 0)]
            for h in headers
        ],
    }
    return Volume(
        values=np.concatenate(slices).astype(np.float32),
        spacing=(row_mm, col_mm, slice_mm),
        slice_files=slice_files,
        geometry=geometry,
        modality=modality,
    )
