"""Running a generator over image files and medical volumes: `jaxcycle translate`.

Channels are matched to the generator: a grey image into a 3-channel generator is replicated
to RGB and the RGB output averaged back to grey; an RGB image into a 1-channel generator is
averaged to grey first. Image sizes need not fit the network's strides: each image is padded
at the bottom and right by reflection up to the next size the network accepts, and the
output cropped back.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxcycle import checkpoints
from jaxcycle.architecture import Architecture
from jaxcycle.data.dicom import find_series, is_dicom_file, read_header
from jaxcycle.data.images import (
    IMAGE_SUFFIXES,
    LoadedImage,
    match_channels,
    read_image,
    write_image,
)
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

OUTPUT_MODALITIES = ("ct", "mr")


def size_multiple(arch: Architecture) -> int:
    """Input sizes must be multiples of this for the output to match the input size."""
    return 2**arch.num_downs if arch.kind == "unet" else 4


def pad_to_multiple(pixels: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pads HWC pixels at the bottom and right to multiples of `multiple`."""
    h, w = pixels.shape[:2]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == pad_w == 0:
        return pixels
    return np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def make_generator_fn(arch: Architecture, variables: dict) -> Callable[[np.ndarray], np.ndarray]:
    """A jitted NHWC [-1, 1] -> NHWC [-1, 1] function of the generator in eval mode."""
    if not arch.is_generator:
        raise ValueError(f"not a generator: {arch.describe()}")
    module = arch.build()
    apply = jax.jit(lambda v, x: module.apply(v, x, train=False))
    variables = jax.device_put(variables)
    return lambda x: np.asarray(apply(variables, jnp.asarray(x)))


def translate_batch(
    generator: Callable[[np.ndarray], np.ndarray],
    images: Sequence[LoadedImage],
    arch: Architecture,
) -> list[np.ndarray]:
    """Images of one shape through the generator, each output matching its input's channels."""
    h, w = images[0].pixels.shape[:2]
    batch = np.stack(
        [
            pad_to_multiple(match_channels(im.pixels, arch.input_nc), size_multiple(arch))
            for im in images
        ]
    )
    out = generator(batch)[:, :h, :w]
    return [match_channels(o, 1 if im.grey else 3) for o, im in zip(out, images, strict=True)]


def translate_slices(
    generator: Callable[[np.ndarray], np.ndarray],
    slices: np.ndarray,
    arch: Architecture,
    batch_size: int = 8,
) -> np.ndarray:
    """Grey slices (K, H, W) in [-1, 1] through the generator, `batch_size` at a time, as grey
    images are (channels matched, padded, cropped back): (K, H, W) in [-1, 1]."""
    out = []
    for start in range(0, len(slices), batch_size):
        chunk = [LoadedImage(s[..., None], 16, True) for s in slices[start : start + batch_size]]
        out += [o[..., 0] for o in translate_batch(generator, chunk, arch)]
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
    generator: Callable[[np.ndarray], np.ndarray],
    arch: Architecture,
    job: _VolumeJob,
    options: VolumeOptions,
    batch_size: int,
    overwrite: bool,
) -> Path:
    """Reads, translates and writes one volume; returns the NIfTI file or DICOM folder."""
    from jaxcycle.data.ingest import IngestOptions, volume_intensity
    from jaxcycle.data.writers import (
        series_geometry,
        source_templates,
        write_dicom_series,
        write_nifti,
    )

    ref = job.ref
    volume = ref.load()
    if volume.values.ndim != 3:
        raise DataError(f"{ref.source}: volumes must be grey (got shape {volume.values.shape})")
    ingest_options = IngestOptions(
        ct_window=tuple(options.ct_window), mr_percentiles=tuple(options.mr_percentiles)
    )
    source_map = volume_intensity(volume, ref.source, options.input_modality, ingest_options)
    translated = translate_slices(generator, source_map.normalise(volume.values), arch, batch_size)
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
) -> list[Path]:
    """Translates image files and volumes with the generator in `checkpoint`.

    Image outputs keep the input names; a NIfTI volume gives a NIfTI file of the same name, a
    DICOM series a folder (named after its input folder, or its first file's stem) of new
    DICOM files. Returns the image files in input order, then the volumes' files and folders.
    Nothing is written unless every output name is free (or `overwrite`) and no two inputs
    share a name; volume headers are checked before anything is written.
    """
    volumes = volumes or VolumeOptions()
    variables, arch, _ = checkpoints.load_params(checkpoint)
    generator = make_generator_fn(arch, variables)
    output_dir = Path(output_dir)
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
    images = [read_image(f) for f in files]
    for i, im in enumerate(images):
        groups[im.pixels.shape].append(i)
    written = [Path()] * len(files)
    with tqdm(
        total=len(files), desc="translate", unit="img", disable=not progress or not files
    ) as bar:
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                outs = translate_batch(generator, [images[i] for i in chunk], arch)
                for i, out in zip(chunk, outs, strict=True):
                    bits = images[i].bits if images[i].grey else 8
                    written[i] = write_image(targets[i], out, bits, overwrite=True)
                bar.update(len(chunk))
    for job in tqdm(jobs, desc="translate", unit="volume", disable=not progress or not jobs):
        written.append(_translate_volume(generator, arch, job, volumes, batch_size, overwrite))
    return written


def _taken(target: Path) -> bool:
    """An existing file, or a folder that is not empty."""
    if target.is_dir():
        return any(target.iterdir())
    return target.exists()
