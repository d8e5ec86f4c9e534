"""Running a generator over image files and medical volumes: `jaxcycle translate`.

The generator is a params directory or a training run's workdir (`--checkpoint RUN`, with
`--direction ab|ba`). Images go through `inference.Translator`, as evaluation's do: channels
matched to the generator (grey replicated to RGB, RGB averaged to grey, and the output's
channels matched back to the input's), resized to the working size (a run's crop size, or
`--size`; params directories keep each image's size), padded to the network's stride and
cropped back; outputs are resized back to their input's size.

Volumes (NIfTI files, DICOM files and series) are read as `jaxcycle data ingest` reads them:
axial slices in the display orientation, intensities mapped to [-1, 1] by the input modality's
convention (`ingest.volume_intensity`: the CT window, or the volume's MR percentiles). The input
modality is the one the generator translates from, the other of `output_modality` (ct or mr).
The slices go through the generator in batches like grey images, come back in the physical
units of the output modality (HU through the CT window; MR through `mr_range`, the a.u. that
-1 and +1 stand for) and are written in the input's format: a NIfTI file with the source's
affine and header, or a new DICOM series (`writers.write_dicom_series`) on the source's
geometry, patient and study.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxcycle.data.dicom import find_series, is_dicom_file, read_header
from jaxcycle.data.images import IMAGE_SUFFIXES, read_image, write_image
from jaxcycle.data.ingest import IngestOptions, volume_intensity
from jaxcycle.data.intensity import (
    CT_WINDOW,
    MR_PERCENTILES,
    MR_RANGE,
    IntensityMap,
    ct_window,
    mr_percentiles,
)
from jaxcycle.data.nifti import NIFTI_SUFFIXES, is_nifti_file, nifti_ref
from jaxcycle.data.volume import DataError, VolumeRef
from jaxcycle.data.writers import (
    series_geometry,
    source_templates,
    write_dicom_series,
    write_nifti,
)
from jaxcycle.inference import Translator, load_translator

OUTPUT_MODALITIES = ("ct", "mr")


def translate_images(translator: Translator, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """HWC [-1, 1] images of one shape through the generator, each output at its input's size
    and channel count."""
    h, w = images[0].shape[:2]
    return list(translator.restore_size(translator(np.stack(images)), h, w))


def translate_slices(translator: Translator, slices: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Grey slices (K, H, W) in [-1, 1] through the generator, `batch_size` at a time, as grey
    images are: (K, H, W) in [-1, 1]."""
    out = []
    for start in range(0, len(slices), batch_size):
        chunk = [s[..., None] for s in slices[start : start + batch_size]]
        out += [o[..., 0] for o in translate_images(translator, chunk)]
    return np.stack(out)


@dataclass(frozen=True)
class VolumeOptions:
    """How volumes are translated.

    output_modality: "ct" or "mr", the modality the generator translates into (the input is
        taken to be the other one); required when there are volume inputs.
    ct_window: HU mapped to [-1, 1], for CT inputs and CT outputs alike.
    mr_percentiles: an MR input's percentiles mapped to -1 and +1.
    mr_range: the MR values (a.u.) that -1 and +1 of an MR output stand for.
    nifti_frame: the volume to take from 4-D NIfTI files.
    """

    output_modality: str | None = None
    ct_window: tuple[float, float] = CT_WINDOW
    mr_percentiles: tuple[float, float] = MR_PERCENTILES
    mr_range: tuple[float, float] = MR_RANGE
    nifti_frame: int | None = None

    def __post_init__(self) -> None:
        if self.output_modality is not None and self.output_modality not in OUTPUT_MODALITIES:
            raise ValueError(f"output modality must be ct or mr (got {self.output_modality!r})")
        ct_window(*self.ct_window)  # validates
        mr_percentiles(np.array([0.0, 1.0]), *self.mr_percentiles)  # validates
        lo, hi = self.mr_range
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"MR range needs finite LO < HI (got {lo:g}, {hi:g})")

    @property
    def input_modality(self) -> str:
        """The modality translated from."""
        return "mr" if self.output_modality == "ct" else "ct"

    def output_map(self) -> IntensityMap:
        """The map from the generator's [-1, 1] to the output modality's units."""
        if self.output_modality == "ct":
            return ct_window(*self.ct_window)
        return IntensityMap(float(self.mr_range[0]), float(self.mr_range[1]), "a.u.", "mr range")


@dataclass(frozen=True)
class _VolumeJob:
    """One input volume and where its translation goes: a NIfTI file or a DICOM folder."""

    ref: VolumeRef
    target: Path


def _inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path], list]:
    """Image files, NIfTI files and DICOM groups [(files, name)] among the inputs.

    A folder gives the image, NIfTI and DICOM files directly inside it (its DICOM files are one
    group, named after the folder); the DICOM files named one by one form one more group.
    Other named files are taken as images.
    """
    images: list[Path] = []
    niftis: list[Path] = []
    groups: list[tuple[list[Path], str | None]] = []
    loose: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file())
            here = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
            nifti = [p for p in found if is_nifti_file(p)]
            known = set(here) | set(nifti)
            dicom = [p for p in found if p not in known and is_dicom_file(p)]
            if not (here or nifti or dicom):
                raise ValueError(
                    f"{item}: no images ({', '.join(IMAGE_SUFFIXES)}), NIfTI "
                    f"({', '.join(NIFTI_SUFFIXES)}) or DICOM files in this folder"
                )
            images += here
            niftis += nifti
            if dicom:
                groups.append((dicom, item.name))
        elif item.exists():
            if is_nifti_file(item):
                niftis.append(item)
            elif is_dicom_file(item):
                loose.append(item)
            else:
                images.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    if loose:
        groups.append((loose, None))
    return images, niftis, groups


def _volume_jobs(
    niftis: list[Path], groups: list, output_dir: Path, options: VolumeOptions
) -> list[_VolumeJob]:
    """The volumes to translate, from their headers; DataError naming a bad file."""
    jobs = [
        _VolumeJob(nifti_ref(f, frame=options.nifti_frame), output_dir / f.name) for f in niftis
    ]
    for files, name in groups:
        series, errors = find_series(files)
        if errors:
            raise DataError(errors[0][1])
        for k, ref in enumerate(series):
            if name is None:  # files named one by one: a series is named by its first file
                folder = Path(ref.source).stem
            else:
                folder = name if len(series) == 1 else f"{name}_{k + 1}"
            jobs.append(_VolumeJob(ref, output_dir / folder))
    if jobs and options.output_modality is None:
        raise ValueError(
            f"{jobs[0].ref.source}: translating a volume needs --output-modality ct or mr "
            "(the modality the generator translates into)"
        )
    for job in jobs:
        if job.ref.format != "dicom":
            continue
        if len(set(job.ref.files)) != job.ref.slices:
            raise DataError(f"{job.ref.source}: multi-frame DICOM cannot be written back")
        declared = str(read_header(job.ref.source).get("Modality", "")).lower()
        if declared in OUTPUT_MODALITIES and declared != options.input_modality:
            raise DataError(
                f"{job.ref.source}: DICOM Modality is {declared.upper()}, but --output-modality "
                f"{options.output_modality} translates {options.input_modality.upper()} into "
                f"{options.output_modality.upper()}"
            )
    return jobs


def _translate_volume(
    translator: Translator,
    job: _VolumeJob,
    options: VolumeOptions,
    batch_size: int,
    overwrite: bool,
) -> Path:
    """Reads, translates and writes one volume; returns the NIfTI file or DICOM folder."""

    ref = job.ref
    volume = ref.load()
    if volume.values.ndim != 3:
        raise DataError(f"{ref.source}: volumes must be grey (got shape {volume.values.shape})")
    ingest_options = IngestOptions(
        ct_window=tuple(options.ct_window), mr_percentiles=tuple(options.mr_percentiles)
    )
    source_map = volume_intensity(volume, ref.source, options.input_modality, ingest_options)
    translated = translate_slices(translator, source_map.normalise(volume.values), batch_size)
    values = options.output_map().restore(translated)
    if ref.format == "nifti":
        return write_nifti(job.target, values, reference=ref.source, overwrite=overwrite)
    write_dicom_series(
        job.target,
        values,
        modality=options.output_modality.upper(),
        geometry=series_geometry(volume.geometry, volume.spacing[2]),
        templates=source_templates(volume.slice_files, ref.source),
        patient=ref.patient,
        overwrite=overwrite,
    )
    return job.target


def translate_files(
    checkpoint: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    batch_size: int = 8,
    overwrite: bool = False,
    progress: bool = True,
    volumes: VolumeOptions | None = None,
    direction: str = "ab",
    size: int | None = None,
) -> list[Path]:
    """Translates image files and volumes with the generator in `checkpoint`: a params
    directory, or a training run's workdir (its `direction` generator, "ab" or "ba"); see
    `inference.load_translator` for `size`, the working size (outputs are resized back).

    Image outputs keep the input names; a NIfTI volume gives a NIfTI file of the same name, a
    DICOM series a folder (named after its input folder, or its first file's stem) of new
    DICOM files. Returns the image files in input order, then the volumes' files and folders.
    Nothing is written unless every output name is free (or `overwrite`) and no two inputs
    share a name; volume headers are checked before anything is written.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {batch_size})")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{output_dir}: exists and is not a folder; --output names a folder")
    volumes = volumes or VolumeOptions()
    files, niftis, dicom_groups = _inputs(inputs)
    jobs = _volume_jobs(niftis, dicom_groups, output_dir, volumes)
    targets = [output_dir / f.name for f in files]
    names = [(f.name, str(f)) for f in files] + [(j.target.name, j.ref.source) for j in jobs]
    seen: dict[str, str] = {}
    for name, source in names:
        if name in seen:
            raise ValueError(f"two inputs named {name}: {seen[name]} and {source}")
        seen[name] = source
    taken = [str(t) for t in targets if t.exists()]
    taken += [str(j.target) for j in jobs if _taken(j.target)]
    if taken and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(taken)} (use --overwrite)")

    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    images = [read_image(f) for f in files]  # every input checked before anything runs
    translator = load_translator(checkpoint, direction, size)
    for i, im in enumerate(images):
        groups[im.pixels.shape].append(i)
    written = [Path()] * len(files)
    with tqdm(
        total=len(files), desc="translate", unit="img", disable=not progress or not files
    ) as bar:
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                outs = translate_images(translator, [images[i].pixels for i in chunk])
                for i, out in zip(chunk, outs, strict=True):
                    bits = images[i].bits if images[i].grey else 8
                    written[i] = write_image(targets[i], out, bits, overwrite=True)
                bar.update(len(chunk))
    for job in tqdm(jobs, desc="translate", unit="volume", disable=not progress or not jobs):
        written.append(_translate_volume(translator, job, volumes, batch_size, overwrite))
    return written


def _taken(target: Path) -> bool:
    """An existing file, or a folder that is not empty."""
    if target.is_dir():
        return any(target.iterdir())
    return target.exists()
