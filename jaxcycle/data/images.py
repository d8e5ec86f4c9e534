"""Ordinary image files (PNG, JPEG, TIFF, BMP) in and out, as float arrays in [-1, 1].

8-bit files map 0..255 and 16-bit files 0..65535 onto [-1, 1], the reference project's
`Normalize((0.5,), (0.5,))` after `ToTensor()`. Writing rounds to the nearest level of the
requested bit depth (the reference truncates, which biases every image down by half a level).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageError(ValueError):
    """An image file that cannot be read or written as asked."""


@dataclass(frozen=True)
class LoadedImage:
    """An image as HWC float32 in [-1, 1], with what is needed to write its translation back."""

    pixels: np.ndarray
    bits: int  # 8 or 16
    grey: bool


MAX_PIXELS = 8192 * 8192  # far beyond any scanner's slice; a header claiming more is refused


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image file opened (its header read, no pixels decoded yet) and its size checked;
    PIL's errors, here or in the caller's block, as ImageError naming the file."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: {width} x {height} pixels, more than the {MAX_PIXELS:,} an image "
                    "may have (a corrupt header or a decompression bomb?)"
                )
            yield im
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except Image.DecompressionBombError as e:  # raised by Image.open itself for huge headers
        raise ImageError(f"{path}: refused, {e}") from None
    except (OSError, SyntaxError) as e:  # truncated or corrupt data
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from None


def check_image(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header alone: cheap, for checking a folder
    before any work; ImageError naming the file if it is not an image read_image can open."""
    with _opened(Path(path)) as im:
        return im.size


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Reads an 8- or 16-bit, grey or RGB(A) image file; alpha is dropped. Images of more than
    MAX_PIXELS pixels are refused from their header, before their data are decoded."""
    path = Path(path)
    with _opened(path) as im:
        im.load()
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            array, bits = np.asarray(im, dtype=np.uint16), 16
        elif mode == "I":  # 32-bit int container, as PIL opens most 16-bit PNGs
            array, bits = np.asarray(im), 16
            if array.min() < 0 or array.max() > 65535:
                raise ImageError(f"{path}: 32-bit integer pixels are not supported")
        elif mode in ("L", "RGB"):
            array, bits = np.asarray(im), 8
        elif mode in ("LA", "RGBA", "P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
            target = "L" if mode in ("LA", "1") else "RGB"
            array, bits = np.asarray(im.convert(target)), 8
        else:
            raise ImageError(f"{path}: unsupported image mode {mode!r}")
    grey = array.ndim == 2
    if grey:
        array = array[..., None]
    pixels = array.astype(np.float32) / (2**bits - 1) * 2 - 1
    return LoadedImage(pixels, bits, grey)


def match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """HWC pixels with C made equal to `channels` (1 <-> 3) by replication or averaging."""
    have = pixels.shape[-1]
    if have == channels:
        return pixels
    if have == 1:
        return np.repeat(pixels, channels, axis=-1)
    if channels == 1:
        return pixels.mean(axis=-1, keepdims=True)
    raise ValueError(f"cannot feed {have}-channel images to a {channels}-channel generator")


def image_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files directly inside any folder given, sorted."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise ValueError(f"{item}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            files += found
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return files


def to_levels(pixels: np.ndarray, bits: int = 8) -> np.ndarray:
    """[-1, 1] floats -> unsigned integers of `bits` bits, rounded to the nearest level."""
    top = 2**bits - 1
    levels = np.rint((np.clip(pixels, -1, 1) + 1) / 2 * top)
    return levels.astype(np.uint16 if bits == 16 else np.uint8)


def write_image(
    path: str | os.PathLike, pixels: np.ndarray, bits: int = 8, overwrite: bool = False
) -> Path:
    """Writes HWC (C = 1 or 3) or HW pixels in [-1, 1]; the format follows the suffix."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (use --overwrite to replace it)")
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if bits == 16 and (pixels.ndim != 2 or path.suffix.lower() not in (".png", ".tif", ".tiff")):
        raise ImageError(f"{path}: 16-bit output needs a grey image and a PNG or TIFF file")
    levels = to_levels(pixels, bits)
    image = Image.fromarray(levels)  # uint16 HW -> 'I;16', uint8 -> 'L' or 'RGB'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        image.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
