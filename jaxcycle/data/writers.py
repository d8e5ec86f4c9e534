"""Translated slices out: PNG (8/16-bit), NIfTI (the source's geometry) and DICOM series.

The writers take slices in physical units (HU for CT) on the source's own grid, in the display
orientation of `jaxcycle.data` (row 0 anterior, column 0 the patient's right).
`write_translated` does the whole way from a generator's output: stored grid -> source grid
(`Placement.inverse`), [-1, 1] -> physical units (the target domain's `IntensityMap`), then one of
the three formats with the source volume's geometry. Source files are only ever read.

DICOM output is a new series: fresh SeriesInstanceUID and SOPInstanceUIDs (pydicom's
`generate_uid`), ImageType DERIVED\\SECONDARY, a SeriesDescription that marks the images as
synthetic, the patient, study and frame of reference of the source (so the synthetic series lies
on the source images), the source geometry (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing), and 16-bit integer pixels with RescaleSlope/RescaleIntercept chosen so that the
values (HU) come back to within half a unit; PixelRepresentation says whether they are signed.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from jaxcycle.data.dicom import read_header
from jaxcycle.data.images import write_image
from jaxcycle.data.nifti import open_nifti, slices_to_volume

SYNTHETIC_DESCRIPTION = "SYNTHETIC {modality} (jaxcycle) NOT FOR DIAGNOSIS"


def write_png_slices(
    out_dir: str | os.PathLike,
    slices: np.ndarray,
    names: Sequence[str],
    *,
    bits: int = 16,
    overwrite: bool = False,
) -> list[Path]:
    """Slices (K, H, W[, C]) in [-1, 1] as K image files named `names` (suffix: .png if none)."""
    if len(names) != len(slices):
        raise ValueError(f"{len(slices)} slices but {len(names)} names")
    out_dir = Path(out_dir)
    paths = [out_dir / (n if Path(n).suffix else f"{n}.png") for n in names]
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} already exists (use --overwrite to replace it)")
    return [
        write_image(p, s, bits=bits, overwrite=overwrite)
        for p, s in zip(paths, slices, strict=True)
    ]


def write_nifti(
    path: str | os.PathLike,
    values: np.ndarray,
    *,
    reference: str | os.PathLike,
    overwrite: bool = False,
) -> Path:
    """Slices (K, H, W) in physical units as a NIfTI volume with the reference's header and
    affine: voxels in the reference's own axis order, float32 data, scaling 1 and 0."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (use --overwrite to replace it)")
    ref = open_nifti(reference)
    canonical = slices_to_volume(np.asarray(values, dtype=np.float32))
    expected = nib.as_closest_canonical(ref).shape[:3] if ref.ndim >= 3 else None
    if expected is not None and canonical.shape != tuple(expected):
        raise ValueError(
            f"{len(values)} slices of {values.shape[1]}x{values.shape[2]} do not fill "
            f"{reference}'s volume {tuple(ref.shape)}"
        )
    to_source = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.io_orientation(ref.affine)
    )
    data = nib.orientations.apply_orientation(canonical, to_source).astype(np.float32)
    header = ref.header.copy()
    header.set_data_dtype(np.float32)
    image = type(ref)(data, ref.affine, header=header)
    image.header.set_slope_inter(1.0, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{''.join(path.suffixes)}")
    try:
        nib.save(image, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class DicomGeometry:
    """Where a series' slices lie: per-slice ImagePositionPatient (LPS mm), one
    ImageOrientationPatient (row then column direction cosines), PixelSpacing (row, column)."""

    positions: np.ndarray  # (K, 3)
    orientation: np.ndarray  # (6,)
    pixel_spacing: tuple[float, float]
    slice_thickness: float | None = None

    @classmethod
    def from_nifti_affine(cls, affine: np.ndarray, shape: Sequence[int]) -> DicomGeometry:
        """The geometry of `nifti.volume_to_slices` slices of a RAS-canonical volume.

        Pixel (r, c) of slice k is voxel (X - 1 - c, Y - 1 - r, k); RAS -> LPS negates x, y.
        """
        a = np.asarray(affine, dtype=np.float64)
        nx, ny, nz = (int(n) for n in shape[:3])
        lps = np.array([-1.0, -1.0, 1.0])
        corners = np.stack([[nx - 1, ny - 1, k, 1.0] for k in range(nz)])
        positions = (corners @ a.T)[:, :3] * lps
        row_dir = -a[:3, 0] * lps  # along increasing column index c
        col_dir = -a[:3, 1] * lps  # along increasing row index r
        orientation = np.concatenate(
            [row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)]
        )
        spacing = (float(np.linalg.norm(a[:3, 1])), float(np.linalg.norm(a[:3, 0])))
        return cls(positions, orientation, spacing, float(np.linalg.norm(a[:3, 2])))


def _rescale(values: np.ndarray, modality: str, template) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept for the stored integers."""
    same_modality = template is not None and (
        str(template.get("Modality", "")).upper() == modality.upper()
    )
    if same_modality and "RescaleSlope" in template and "RescaleIntercept" in template:
        return float(template.RescaleSlope), float(template.RescaleIntercept)
    if modality == "CT":
        return 1.0, -1024.0
    lo, hi = float(values.min()), float(values.max())
    fits = (lo >= 0 and hi <= 65535) or (lo >= -32768 and hi <= 32767)
    if fits and hi - lo >= 256:
        return 1.0, 0.0
    return max(hi - lo, 1e-6) / 4095.0, lo  # small-valued units: 4096 levels over the range


def _stored(values: np.ndarray, slope: float, intercept: float):
    stored = np.rint((values.astype(np.float64) - intercept) / slope)
    if stored.min() >= 0 and stored.max() <= 65535:
        return stored.astype(np.uint16), 0
    if stored.min() >= -32768 and stored.max() <= 32767:
        return stored.astype(np.int16), 1
    raise ValueError(
        f"values {values.min():g}..{values.max():g} do not fit 16 bits with slope {slope:g}, "
        f"intercept {intercept:g}"
    )


_COPIED = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
)


def write_dicom_series(
    out_dir: str | os.PathLike,
    values: np.ndarray,
    *,
    modality: str,
    geometry: DicomGeometry | None,
    templates: Sequence | None = None,
    patient: str = "anonymous",
    series_number: int = 999,
    description: str | None = None,
    prefix: str = "slice",
    overwrite: bool = False,
) -> list[Path]:
    """Slices (K, H, W) in physical units as a new DICOM series, one file per slice.

    modality: "CT", "MR" or another DICOM modality ("OT": secondary capture).
    geometry: slice positions and orientation (None: no patient geometry is written).
    templates: per-slice source datasets (pydicom, headers suffice) whose patient, study and
        frame of reference the series inherits, and which it references as source images;
        None: a new study for `patient`.
    """
    values = np.asarray(values)
    if values.ndim != 3:
        raise ValueError(f"DICOM output needs grey slices (K, H, W), got shape {values.shape}")
    k_slices, rows, cols = values.shape
    if templates is not None and len(templates) != k_slices:
        raise ValueError(f"{k_slices} slices but {len(templates)} template datasets")
    if geometry is not None and len(geometry.positions) != k_slices:
        raise ValueError(f"{k_slices} slices but {len(geometry.positions)} slice positions")
    modality = modality.upper()
    sop_class = {"CT": CTImageStorage, "MR": MRImageStorage}.get(
        modality, SecondaryCaptureImageStorage
    )
    out_dir = Path(out_dir)
    paths = [out_dir / f"{prefix}{k + 1:04d}.dcm" for k in range(k_slices)]
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} already exists (use --overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)

    first = templates[0] if templates is not None else None
    slope, intercept = _rescale(values, modality, first)
    stored, representation = _stored(values, slope, intercept)
    series_uid = generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    now = datetime.datetime.now()
    lo, hi = float(values.min()), float(values.max())
    center, width = (40.0, 400.0) if modality == "CT" else ((lo + hi) / 2, max(hi - lo, 1.0))
    written = []
    for k in range(k_slices):
        template = templates[k] if templates is not None else None
        ds = Dataset()
        if template is not None:
            for keyword in _COPIED:
                if keyword in template:
                    setattr(ds, keyword, template.data_element(keyword).value)
        else:
            ds.PatientName = patient
            ds.PatientID = patient
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = now.strftime("%Y%m%d")
            ds.StudyTime = now.strftime("%H%M%S")
        if geometry is not None and "FrameOfReferenceUID" not in ds:
            ds.FrameOfReferenceUID = frame_uid
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.Modality = modality
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = (description or SYNTHETIC_DESCRIPTION.format(modality=modality))[:64]
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.DerivationDescription = "Synthetic image translated by a CycleGAN generator (jaxcycle)"
        ds.BurnedInAnnotation = "NO"
        ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        if template is not None and "SOPInstanceUID" in template:
            ref = Dataset()
            ref.ReferencedSOPClassUID = template.SOPClassUID
            ref.ReferencedSOPInstanceUID = template.SOPInstanceUID
            ds.SourceImageSequence = [ref]
        if geometry is not None:
            ds.ImagePositionPatient = [float(f"{v:.6f}") for v in geometry.positions[k]]
            ds.ImageOrientationPatient = [float(f"{v:.6f}") for v in geometry.orientation]
            ds.PixelSpacing = [float(f"{v:.6f}") for v in geometry.pixel_spacing]
            if geometry.slice_thickness is not None and np.isfinite(geometry.slice_thickness):
                ds.SliceThickness = float(f"{geometry.slice_thickness:.6f}")
            normal = np.cross(geometry.orientation[:3], geometry.orientation[3:])
            ds.SliceLocation = float(f"{float(geometry.positions[k] @ normal):.6f}")
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = representation
        ds.RescaleSlope = float(f"{slope:.10g}")
        ds.RescaleIntercept = float(f"{intercept:.10g}")
        ds.RescaleType = "HU" if modality == "CT" else "US"
        ds.WindowCenter = float(f"{center:.6g}")
        ds.WindowWidth = float(f"{width:.6g}")
        if modality == "CT":
            ds.KVP = None
            ds.AcquisitionNumber = None
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds["PixelData"].VR = "OW"
        path = paths[k]
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written


def source_templates(files: Sequence[str], source: str) -> list:
    """The headers of a DICOM source's slice files, one per slice, as `write_dicom_series`
    templates; a multi-frame source (several slices in one file) is refused."""
    if len(set(files)) != len(files):
        raise ValueError(f"{source}: multi-frame sources cannot be written back")
    return [read_header(f) for f in files]


def series_geometry(geometry: dict, slice_mm: float | None) -> DicomGeometry | None:
    """The `DicomGeometry` of a DICOM source series from the facts `dicom.load_series` keeps;
    None where its files do not give orientation, pixel spacing and every slice position."""
    known = geometry["orientation"] is not None and geometry["pixel_spacing"] is not None
    if not known or any(p is None for p in geometry["positions"]):
        return None
    return DicomGeometry(
        np.asarray(geometry["positions"]),
        np.asarray(geometry["orientation"]),
        tuple(geometry["pixel_spacing"]),
        slice_mm,
    )


def write_translated(
    dataset,
    domain: str,
    volume: int,
    translated: np.ndarray,
    out: str | os.PathLike,
    *,
    fmt: str,
    target: str | None = None,
    bits: int = 16,
    overwrite: bool = False,
) -> list[Path]:
    """Writes a generator's output for one source volume of a dataset.

    dataset: a `store.Dataset`; domain, volume: the source volume (an index into
    `dataset.volumes(domain)`); translated: (K, S, S[, 1]) in [-1, 1] on the stored grid, one
    slice per source slice; target: the domain the images were translated into (default: the
    other one), whose intensity map for the patient restores physical units.
    fmt: "png" (out: a folder; slices in [-1, 1] on the source grid), "nifti" (out: a .nii or
    .nii.gz file; needs a NIfTI source) or "dicom" (out: a folder; DICOM or NIfTI source).
    """
    record = dataset.volumes(domain)[volume]
    target = target or next(d for d in dataset.domains if d != domain)
    translated = np.asarray(translated, dtype=np.float32)
    if translated.ndim == 4 and translated.shape[-1] == 1:
        translated = translated[..., 0]
    if len(translated) != record["count"]:
        raise ValueError(
            f"{len(translated)} translated slices for a source volume of {record['count']}"
        )
    on_source = dataset.placement(domain, volume).inverse(translated)
    if fmt == "png":
        names = [f"{record['patient']}_{k:04d}" for k in range(len(on_source))]
        return write_png_slices(out, on_source, names, bits=bits, overwrite=overwrite)
    values = dataset.intensity_for(target, record["patient"]).restore(on_source)
    modality = dataset.modality(target)
    dicom_modality = {"ct": "CT", "mr": "MR"}.get(modality, "OT")
    if fmt == "nifti":
        if record["format"] != "nifti":
            raise ValueError(f"NIfTI output needs a NIfTI source ({record['source']} is not)")
        return [write_nifti(out, values, reference=record["source"], overwrite=overwrite)]
    if fmt != "dicom":
        raise ValueError(f"unknown output format {fmt!r} (png, nifti or dicom)")
    geometry, templates = None, None
    if record["format"] == "dicom":
        files = [dataset.slices(domain)[record["first"] + k]["source"] for k in range(len(values))]
        templates = source_templates(files, record["source"])
        geometry = series_geometry(record["geometry"], record["spacing"][2])
    elif record["format"] == "nifti":
        g = record["geometry"]
        canonical_shape = (values.shape[2], values.shape[1], values.shape[0])
        geometry = DicomGeometry.from_nifti_affine(g["canonical_affine"], canonical_shape)
    return write_dicom_series(
        out,
        values,
        modality=dicom_modality,
        geometry=geometry,
        templates=templates,
        patient=record["patient"],
        prefix=f"{record['patient']}_",
        overwrite=overwrite,
    )
