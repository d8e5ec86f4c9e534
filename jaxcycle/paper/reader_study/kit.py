"""The reader study's kit: the images re-encoded without metadata under blinded, shuffled
names, the page readers open (`page.html`, filled in with the kit's title and image list),
readers.zip and the answer key (see the package's docstring)."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import random
import shutil
import uuid
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from jaxcycle.paper.reader_study.analysis import KEY_COLUMNS, REAL, SYNTHETIC, TRUTHS, PathLike

DEFAULT_REAL_GROUP = "Ground truth"
DEFAULT_SYNTHETIC_GROUP = "Synthetic"
DEFAULT_TITLE = "Reader study: real or synthetic?"
KIT_FILES = ("index.html", "key.csv", "readers.zip", "images")
# The page's template (package data): __TITLE__ and __KIT__ are filled in by `_render_page`.
_PAGE_FILE = "page.html"


def _encode_png(src: Path) -> tuple[bytes, tuple[int, int], str]:
    """The image re-encoded as PNG without metadata (pixels unchanged); its size and mode."""
    try:
        with Image.open(src) as im:
            frames = getattr(im, "n_frames", 1)
            im.load()
            im = ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"{src}: no such image file") from None
    except IsADirectoryError:
        raise ValueError(f"{src}: is a folder, not an image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{src}: not a readable image ({e})") from e
    if frames > 1:
        raise ValueError(
            f"{src}: holds {frames} frames (an animation or stack); give single images"
        )
    kwargs: dict[str, Any] = {}
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif im.mode in ("I", "I;16B", "I;16L", "I;16N"):
        lo, hi = im.getextrema()
        if lo < 0 or hi > 65535:
            raise ValueError(
                f"{src}: {im.mode} values {lo}..{hi} do not fit a 16-bit PNG; rescale it first"
            )
        im = (im if im.mode == "I" else im.convert("I")).convert("I;16")  # a 16-bit PNG
    elif im.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16"):
        raise ValueError(
            f"{src}: image mode {im.mode} cannot be shown in a browser; convert it to an 8- or "
            "16-bit PNG first"
        )
    if im.mode in ("P", "L", "RGB") and "transparency" in im.info:
        kwargs["transparency"] = im.info["transparency"]
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kwargs)  # no pnginfo/icc/exif/dpi: nothing but pixels
    return buf.getvalue(), im.size, im.mode


def _check_kit_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out_dir}: exists and is not empty; pass overwrite=True (--overwrite) to replace "
            "the kit"
        )
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in KIT_FILES)
    if foreign:
        raise FileExistsError(
            f"{out_dir}: holds files that are not part of a kit ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); move them away (reader CSVs of the old "
            "kit would not match the new one) or choose another folder"
        )


def _pairs_by_name(real: Sequence[Path], synthetic: Sequence[Path]) -> dict[Path, Path]:
    """synthetic -> real, where a real image has the same file name without suffix."""
    by_stem: dict[str, list[Path]] = {}
    for r in real:
        by_stem.setdefault(r.stem, []).append(r)
    pairs, ambiguous = {}, set()
    for s in synthetic:
        matches = by_stem.get(s.stem, [])
        if len(matches) == 1:
            pairs[s] = matches[0]
        elif matches:
            ambiguous.add(s.stem)
    if ambiguous:
        warnings.warn(
            f"{len(ambiguous)} name(s) match several real images and are left unpaired: "
            f"{', '.join(sorted(ambiguous)[:5])}",
            stacklevel=3,
        )
    return pairs


def make_kit(
    real: Sequence[PathLike],
    synthetic: Sequence[PathLike],
    out_dir: PathLike,
    *,
    seed: int = 0,
    title: str = DEFAULT_TITLE,
    groups: Mapping[PathLike, str] | None = None,
    pairs: Mapping[PathLike, PathLike] | None = None,
    real_group: str = DEFAULT_REAL_GROUP,
    synthetic_group: str = DEFAULT_SYNTHETIC_GROUP,
    overwrite: bool = False,
) -> Path:
    """Writes a blinded reader-study kit to `out_dir` and returns `out_dir`.

    Args:
      real: ground-truth image files (PNG; JPEG/TIFF/BMP are converted to PNG).
      synthetic: generated image files.
      out_dir: the kit folder; it must not exist, or be empty (see `overwrite`).
      seed: the shuffle of the blinded order (same inputs and seed -> same kit).
      title: shown on the page.
      groups: image -> group label (e.g. the model's name), for images not in the default
        groups; a group holds only real or only synthetic images.
      pairs: synthetic image -> its real counterpart (same slice). Default: paired by file name
        without suffix, where exactly one real image has that name.
      real_group, synthetic_group: the default group labels.
      overwrite: replace an existing kit in `out_dir` (only index.html, key.csv, readers.zip and
        images/ may be there).

    Raises FileNotFoundError / ValueError naming the file for a missing or unreadable image,
    FileExistsError for an existing kit (without `overwrite`).
    """
    out_dir = Path(out_dir)
    real_paths, synthetic_paths = [Path(p) for p in real], [Path(p) for p in synthetic]
    if not real_paths or not synthetic_paths:
        raise ValueError("a reader study needs real and synthetic images (one of them is empty)")
    _check_kit_target(out_dir, overwrite)

    entries = [(p, REAL) for p in real_paths] + [(p, SYNTHETIC) for p in synthetic_paths]
    seen: dict[Path, Path] = {}
    for p, _ in entries:
        key = p.resolve()
        if key in seen:
            raise ValueError(f"{p}: given twice (also as {seen[key]})")
        seen[key] = p
    group_of = {Path(k).resolve(): str(v) for k, v in (groups or {}).items()}
    unknown = [k for k in group_of if k not in seen]
    if unknown:
        raise ValueError(f"groups: {unknown[0]} is not one of the real or synthetic images")
    truth_of_group: dict[str, str] = {}
    labels = []
    for p, truth in entries:
        label = group_of.get(p.resolve(), real_group if truth == REAL else synthetic_group)
        if not label.strip():
            raise ValueError(f"{p}: empty group label")
        if truth_of_group.setdefault(label, truth) != truth:
            raise ValueError(f"group {label!r} holds both real and synthetic images")
        labels.append(label)

    if pairs is None:
        pair_map = _pairs_by_name(real_paths, synthetic_paths)
    else:
        real_set = {p.resolve() for p in real_paths}
        synthetic_set = {p.resolve() for p in synthetic_paths}
        pair_map = {}
        for s, r in pairs.items():
            s, r = Path(s), Path(r)
            if s.resolve() not in synthetic_set:
                raise ValueError(f"pairs: {s} is not one of the synthetic images")
            if r.resolve() not in real_set:
                raise ValueError(f"pairs: {r} is not one of the real images")
            pair_map[seen[s.resolve()]] = seen[r.resolve()]

    encoded = []
    for p, _ in entries:
        data, size, mode = _encode_png(p)
        encoded.append((data, (size, mode)))
    looks = {
        t: {look for (_, look), (_, tt) in zip(encoded, entries, strict=True) if tt == t}
        for t in TRUTHS
    }
    if looks[REAL] != looks[SYNTHETIC]:
        warnings.warn(
            "real and synthetic images differ in size or pixel format (real: "
            f"{_describe(looks[REAL])}; synthetic: {_describe(looks[SYNTHETIC])}): readers may "
            "tell them apart by that alone",
            stacklevel=2,
        )

    order = list(range(len(entries)))
    random.Random(seed).shuffle(order)
    width = max(4, len(str(len(entries))))
    blinded = [""] * len(entries)
    for position, i in enumerate(order, start=1):
        blinded[i] = f"img_{position:0{width}d}.png"
    index_of = {p: i for i, (p, _) in enumerate(entries)}
    pair_of = [""] * len(entries)
    for s, r in pair_map.items():
        pair_of[index_of[s]] = pair_of[index_of[r]] = blinded[index_of[r]]

    digest = hashlib.sha256(f"{seed}\0{title}".encode())
    for i in order:
        digest.update(blinded[i].encode() + b"\0" + hashlib.sha256(encoded[i][0]).digest())
    kit = {"id": digest.hexdigest()[:16], "title": title, "images": [blinded[i] for i in order]}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        tmp.mkdir()
        (tmp / "images").mkdir()
        for i in order:
            (tmp / "images" / blinded[i]).write_bytes(encoded[i][0])
        page = _render_page(kit)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        with open(tmp / "key.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(KEY_COLUMNS)
            for i in order:
                p, truth = entries[i]
                writer.writerow([blinded[i], str(p.resolve()), truth, labels[i], pair_of[i]])
        with zipfile.ZipFile(tmp / "readers.zip", "w") as z:
            z.writestr("reader_study/index.html", page, zipfile.ZIP_DEFLATED)
            for i in order:
                z.writestr(f"reader_study/images/{blinded[i]}", encoded[i][0], zipfile.ZIP_STORED)
        if out_dir.exists():
            for name in KIT_FILES:
                target = out_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _describe(looks: set[tuple[tuple[int, int], str]]) -> str:
    return ", ".join(f"{w}x{h} {mode}" for (w, h), mode in sorted(looks))


def _render_page(kit: Mapping[str, Any]) -> str:
    """The page of a kit: the template with its title and its data (id, title, images)."""
    data = json.dumps(kit, ensure_ascii=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        data = data.replace(char, escaped)  # nothing in the data can end the <script>
    page = resources.files(__package__).joinpath(_PAGE_FILE).read_text(encoding="utf-8")
    return page.replace("__TITLE__", html.escape(kit["title"])).replace("__KIT__", data)
