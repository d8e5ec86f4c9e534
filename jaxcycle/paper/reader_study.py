"""Reader study (the paper's section IV.D, Tables V and VI): a blinded kit radiologists score in a
browser, and the analysis of their answers.

Kit (`make_kit`, `jaxcycle reader-study make`)::

    KIT/index.html   the page readers open (self-contained: inline CSS/JS, no network, file://)
    KIT/images/      the images, re-encoded as PNG without metadata, under blinded names
                     (img_0001.png, ...) in an order shuffled with the seed
    KIT/readers.zip  index.html + images/ only: what to send to the readers
    KIT/key.csv      the answer key, for the analyst only (never referenced by the page):
                     image, original, truth (real|synthetic), group, pair

On the page a reader enters a name, then for one image at a time scores realism 1-4 (4 = most
realistic) and says whether the image is real or synthetic (buttons, or keys 1-4, R, S; arrows
move back and forth and answers can be changed). Answers persist in the browser's localStorage,
so a reload loses nothing. "Save CSV" downloads ``reader_<name>.csv`` with the columns
``reader,image,realism,judged_real`` (judged_real: 1 = real, 0 = synthetic; every image of the
kit is a row, with empty fields where unanswered).

Pairs: a synthetic image and a real image of the same slice share a ``pair`` value in the key
(the blinded name of the real image). `make_kit` pairs them by file name (same name without
suffix; e.g. a translation keeps its input's name), or from an explicit mapping.

Analysis (`analyze`, `jaxcycle reader-study analyze`):

- Table V, per group (each synthetic group, e.g. the model name, and "Ground truth"), pooled over
  readers and images: mean and standard deviation of the realism scores, and the share of the
  ratings that judged the image real. The standard deviation is the population one (ddof=0) of
  the individual integer scores. The same per reader, and each reader's share of correct
  real/synthetic calls.
- Table VI, agreement per reader and synthetic group: over the n pairs (synthetic image s_i,
  its real counterpart g_i), with x_i the reader's realism score of s_i and y_i that of g_i,
  means mx, my, population variances sx2, sy2 and covariance sxy (all with 1/n):

      Pearson   r   = sxy / (sx * sy)                         (precision)
      accuracy  C_b = 2 * sx * sy / (sx2 + sy2 + (mx - my)**2)  (bias correction factor)
      Lin's CCC     = 2 * sxy / (sx2 + sy2 + (mx - my)**2) = r * C_b

  r (and so C_b = CCC / r as a ratio) is undefined when a reader gave one score to every image
  on one side; r is then reported as NaN, C_b and CCC by the formulas above (both 0 unless the
  other side is constant too with the same mean, where all three are NaN).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import io
import json
import math
import os
import random
import shutil
import uuid
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxcycle.data.images import image_files

REAL, SYNTHETIC = "real", "synthetic"
TRUTHS = (REAL, SYNTHETIC)
KEY_COLUMNS = ("image", "original", "truth", "group", "pair")
ANSWER_COLUMNS = ("reader", "image", "realism", "judged_real")
SCORES = (1, 2, 3, 4)
DEFAULT_REAL_GROUP = "Ground truth"
DEFAULT_SYNTHETIC_GROUP = "Synthetic"
DEFAULT_TITLE = "Reader study: real or synthetic?"
KIT_FILES = ("index.html", "key.csv", "readers.zip", "images")
STD_DDOF = 0

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------
# Kit
# ---------------------------------------------------------------------------------------------


def _encode_png(src: Path) -> tuple[bytes, tuple[int, int], str]:
    """The image re-encoded as PNG without metadata (pixels unchanged); its size and mode."""
    from PIL import Image, ImageOps

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


# ---------------------------------------------------------------------------------------------
# Reading the key and the answers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """One image of the kit's answer key."""

    image: str
    original: str
    truth: str
    group: str
    pair: str


@dataclass(frozen=True)
class Answer:
    """One reader's answer for one image."""

    realism: int
    judged_real: bool


def _read_csv(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row with the given columns stripped) for each row of a CSV file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {', '.join(missing)} (header: "
                    f"{','.join(header) or '-'}; expected {','.join(columns)})"
                )
            reader.fieldnames = header
            return [
                (reader.line_num, {c: (rec.get(c) or "").strip() for c in columns})
                for rec in reader
            ]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({e})") from e


def read_key(path: PathLike) -> list[KeyRow]:
    """The rows of a kit's key.csv, validated (unique names, truth values, pairs)."""
    path = Path(path)
    rows: list[KeyRow] = []
    names: set[str] = set()
    for line, rec in _read_csv(path, KEY_COLUMNS):
        where = f"{path}: line {line}"
        row = KeyRow(**rec)
        if not row.image:
            raise ValueError(f"{where}: empty image name")
        if row.image in names:
            raise ValueError(f"{where}: image {row.image!r} listed twice")
        if row.truth not in (REAL, SYNTHETIC):
            raise ValueError(f"{where}: truth {row.truth!r} is neither real nor synthetic")
        if not row.group:
            raise ValueError(f"{where}: empty group")
        names.add(row.image)
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no images")
    truth_of_group: dict[str, str] = {}
    real_of_pair: dict[str, list[str]] = {}
    for row in rows:
        if truth_of_group.setdefault(row.group, row.truth) != row.truth:
            raise ValueError(f"{path}: group {row.group!r} holds both real and synthetic images")
        if row.pair and row.truth == REAL:
            real_of_pair.setdefault(row.pair, []).append(row.image)
    for row in rows:
        if row.pair and len(real_of_pair.get(row.pair, [])) != 1:
            n = len(real_of_pair.get(row.pair, []))
            raise ValueError(f"{path}: pair {row.pair!r} has {n} real images (needs exactly 1)")
    return rows


def _parse_score(text: str, where: str) -> int:
    if not text:
        raise ValueError(f"{where}: no realism score (missing answer)")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: realism {text!r} is not a number 1-4") from None
    if value not in SCORES:
        raise ValueError(f"{where}: realism {text!r} is outside 1-4 (whole numbers)")
    return int(value)


_TRUE = {"1", "true", "yes", "y", "real"}
_FALSE = {"0", "false", "no", "n", "synthetic", "fake"}


def _parse_judged(text: str, where: str) -> bool:
    if not text:
        raise ValueError(f"{where}: no real/synthetic judgement (missing answer)")
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"{where}: judged_real {text!r} is not 1 (real) or 0 (synthetic)")


def read_answers(path: PathLike, key: Sequence[KeyRow]) -> tuple[str, dict[str, Answer]]:
    """A reader CSV, checked against the key: (reader name, image -> answer).

    Every image of the key must be answered exactly once, with realism 1-4 and judged_real
    1/0 (also true/false, yes/no, real/synthetic); errors name the file and line.
    """
    path = Path(path)
    known = {row.image for row in key}
    name: str | None = None
    answers: dict[str, Answer] = {}
    for line, values in _read_csv(path, ANSWER_COLUMNS):
        where = f"{path}: line {line}"
        if not any(values.values()):
            continue
        if not values["reader"]:
            raise ValueError(f"{where}: empty reader name")
        if name is None:
            name = values["reader"]
        elif values["reader"] != name:
            raise ValueError(
                f"{where}: reader {values['reader']!r} differs from {name!r} above "
                "(one reader per file)"
            )
        image = values["image"]
        if image not in known:
            raise ValueError(f"{where}: unknown image {image!r} (not in the key)")
        if image in answers:
            raise ValueError(f"{where}: image {image!r} answered twice")
        answers[image] = Answer(
            _parse_score(values["realism"], where), _parse_judged(values["judged_real"], where)
        )
    if name is None:
        raise ValueError(f"{path}: no answers")
    missing = [row.image for row in key if row.image not in answers]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} image(s) of the key not answered: "
            f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
        )
    return name, answers


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Pearson's r, Lin's bias-correction factor C_b and CCC of paired scores x, y.

    Moments are population ones (1/n). r is NaN when x or y is constant; C_b and CCC are NaN
    only when both are constant with equal means (0/0).
    """

    n: int
    mean_x: float
    mean_y: float
    sd_x: float
    sd_y: float
    pearson_r: float
    c_b: float
    ccc: float


def agreement(x: Sequence[float], y: Sequence[float]) -> Agreement:
    """Agreement of paired scores: r = sxy/(sx sy), C_b = 2 sx sy/(sx2 + sy2 + (mx - my)^2),
    CCC = 2 sxy/(sx2 + sy2 + (mx - my)^2) = r * C_b (Lin 1989), all moments with 1/n."""
    if len(x) != len(y):
        raise ValueError(f"agreement: {len(x)} x values but {len(y)} y values")
    n = len(x)
    if n < 2:
        raise ValueError(f"agreement: needs at least 2 pairs, got {n}")
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxx = math.fsum((a - mx) ** 2 for a in x) / n
    syy = math.fsum((b - my) ** 2 for b in y) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / n
    sx, sy = math.sqrt(sxx), math.sqrt(syy)
    denominator = sxx + syy + (mx - my) ** 2
    r = sxy / (sx * sy) if sx > 0 and sy > 0 else math.nan
    c_b = 2 * sx * sy / denominator if denominator > 0 else math.nan
    ccc = 2 * sxy / denominator if denominator > 0 else math.nan
    return Agreement(n, mx, my, sx, sy, r, c_b, ccc)


def _summary(scores: Sequence[int], judged: Sequence[bool]) -> dict[str, float]:
    n = len(scores)
    mean = math.fsum(scores) / n
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (n - STD_DDOF))
    return {"n_ratings": n, "mean": mean, "std": std, "real_pct": 100.0 * sum(judged) / n}


def analyze(key_csv: PathLike, reader_csvs: Sequence[PathLike]) -> dict[str, Any]:
    """Tables V and VI from a kit's key and the readers' CSVs.

    Returns a dict::

        key, readers (names, in file order), reader_files, std_ddof (0),
        n_images, n_real, n_synthetic, n_pairs,
        groups:     {group: {truth, n_images, n_ratings, mean, std, real_pct}}  pooled over
                    readers (synthetic groups first, then real ones, each in key order)
        per_reader: {reader: {correct_pct, groups: {group: {...as above}},
                              agreement: {synthetic group: {n_pairs, mean_synthetic,
                                          mean_real, sd_synthetic, sd_real, pearson_r,
                                          c_b, ccc}}}}

    `agreement` pairs each synthetic image with its real counterpart (the key's `pair`) and
    correlates the reader's realism scores of the synthetic images (x) with those of their
    counterparts (y); see `agreement`. Groups without pairs (or with fewer than 2) have none.
    """
    key_path = Path(key_csv)
    key = read_key(key_path)
    if not reader_csvs:
        raise ValueError("analyze: no reader CSVs given")
    readers: dict[str, dict[str, Answer]] = {}
    files: dict[str, str] = {}
    for path in map(Path, reader_csvs):
        name, answers = read_answers(path, key)
        if name in readers:
            raise ValueError(f"{path}: reader {name!r} is also the reader of {files[name]}")
        readers[name], files[name] = answers, str(path)

    order = [
        g for t in (SYNTHETIC, REAL) for g in dict.fromkeys(r.group for r in key if r.truth == t)
    ]
    members = {g: [r for r in key if r.group == g] for g in order}
    truth = {g: members[g][0].truth for g in order}
    real_of_pair = {r.pair: r.image for r in key if r.pair and r.truth == REAL}
    paired = {
        g: [(r.image, real_of_pair[r.pair]) for r in members[g] if r.pair]
        for g in order
        if truth[g] == SYNTHETIC
    }

    groups = {}
    for g in order:
        ratings = [readers[name][r.image] for name in readers for r in members[g]]
        groups[g] = {
            "truth": truth[g],
            "n_images": len(members[g]),
            **_summary([a.realism for a in ratings], [a.judged_real for a in ratings]),
        }
    per_reader = {}
    for name, answers in readers.items():
        correct = sum(answers[r.image].judged_real == (r.truth == REAL) for r in key)
        entry: dict[str, Any] = {"correct_pct": 100.0 * correct / len(key), "groups": {}}
        for g in order:
            ratings = [answers[r.image] for r in members[g]]
            entry["groups"][g] = {
                "truth": truth[g],
                "n_images": len(members[g]),
                **_summary([a.realism for a in ratings], [a.judged_real for a in ratings]),
            }
        entry["agreement"] = {}
        for g, pairs in paired.items():
            if len(pairs) < 2:
                continue
            a = agreement(
                [answers[s].realism for s, _ in pairs], [answers[r].realism for _, r in pairs]
            )
            entry["agreement"][g] = {
                "n_pairs": a.n,
                "mean_synthetic": a.mean_x,
                "mean_real": a.mean_y,
                "sd_synthetic": a.sd_x,
                "sd_real": a.sd_y,
                "pearson_r": a.pearson_r,
                "c_b": a.c_b,
                "ccc": a.ccc,
            }
        per_reader[name] = entry
    return {
        "key": str(key_path),
        "readers": list(readers),
        "reader_files": files,
        "std_ddof": STD_DDOF,
        "n_images": len(key),
        "n_real": sum(r.truth == REAL for r in key),
        "n_synthetic": sum(r.truth == SYNTHETIC for r in key),
        "n_pairs": sum(len(p) for p in paired.values()),
        "groups": groups,
        "per_reader": per_reader,
    }


def _fmt(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _is_number(cell: str) -> bool:
    try:
        float(cell.rstrip("%"))
    except ValueError:
        return cell == "n/a"
    return True


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    columns = list(zip(header, *rows, strict=True))
    widths = [max(len(c) for c in col) for col in columns]
    numeric = [all(_is_number(c) for c in col[1:]) for col in columns]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def format_report(results: Mapping[str, Any], *, markdown: bool = False) -> str:
    """`analyze`'s results as text (aligned columns) or Markdown: Table V pooled over readers,
    the same per reader, and Table VI (r, C_b, CCC per reader and synthetic group)."""
    h = "## " if markdown else ""
    n_readers = len(results["readers"])
    out = [
        f"{'# ' if markdown else ''}Reader study: {results['n_images']} images "
        f"({results['n_real']} real, {results['n_synthetic']} synthetic, {results['n_pairs']} "
        f"paired), {n_readers} reader(s): {', '.join(results['readers'])}",
        "",
        f"{h}Realism 1-4 (4 = most realistic) and share judged real, all readers pooled (Table V)",
        "",
    ]
    rows = [
        [
            g,
            s["truth"],
            str(s["n_images"]),
            str(s["n_ratings"]),
            _fmt(s["mean"], 2),
            _fmt(s["std"], 2),
            f"{s['real_pct']:.2f}%",
        ]
        for g, s in results["groups"].items()
    ]
    header = ["Group", "Truth", "Images", "Ratings", "Mean", "Std", "Real%"]
    out += _table(header, rows, markdown)
    out += [
        "",
        f"Std: population standard deviation (ddof={results['std_ddof']}) of the individual "
        "scores; Real%: share of the ratings that judged the image real.",
        "",
    ]
    out += [f"{h}Per reader", ""]
    rows = []
    for name, entry in results["per_reader"].items():
        for g, s in entry["groups"].items():
            rows.append(
                [
                    name,
                    g,
                    str(s["n_images"]),
                    _fmt(s["mean"], 2),
                    _fmt(s["std"], 2),
                    f"{s['real_pct']:.2f}%",
                ]
            )
    out += _table(["Reader", "Group", "Images", "Mean", "Std", "Real%"], rows, markdown)
    out += [
        "",
        "Correct real/synthetic calls, all images: "
        + ", ".join(
            f"{name} {entry['correct_pct']:.2f}%" for name, entry in results["per_reader"].items()
        ),
    ]
    out += ["", f"{h}Agreement of synthetic and ground-truth images, per reader (Table VI)", ""]
    rows = []
    for name, entry in results["per_reader"].items():
        for g, a in entry["agreement"].items():
            rows.append(
                [
                    name,
                    g,
                    str(a["n_pairs"]),
                    _fmt(a["pearson_r"], 3),
                    _fmt(a["c_b"], 3),
                    _fmt(a["ccc"], 3),
                ]
            )
    if rows:
        out += _table(["Reader", "Group", "Pairs", "Pearson r", "C_b", "CCC"], rows, markdown)
        out += [
            "",
            "Each synthetic image is paired with its ground-truth counterpart (same slice); x = "
            "the reader's realism scores of the synthetic images, y = those of their "
            "counterparts. r = sxy/(sx sy); C_b (accuracy) = 2 sx sy/(sx^2 + sy^2 + "
            "(mx - my)^2); CCC = 2 sxy/(sx^2 + sy^2 + (mx - my)^2) = r C_b; moments with 1/n. "
            "n/a: undefined (a reader gave one score to all images of one side).",
        ]
    else:
        out += ["No pairs (synthetic images with a ground-truth counterpart): no agreement."]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def _render_page(kit: Mapping[str, Any]) -> str:
    data = json.dumps(kit, ensure_ascii=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        data = data.replace(char, escaped)  # nothing in the data can end the <script>
    return _PAGE.replace("__TITLE__", html.escape(kit["title"])).replace("__KIT__", data)


_PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --bg:#101317; --panel:#1a1f26; --fg:#e7eaef; --muted:#98a2b1; --accent:#3d8ef0;
        --ok:#34a874; --warn:#d99a2b; --border:#2b323c; }
* { box-sizing: border-box; }
html, body { margin:0; height:100%; background:var(--bg); color:var(--fg);
             font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { display:flow-root; }
#app { height:100%; display:flex; flex-direction:column; overflow:hidden; }
button { font:inherit; color:var(--fg); background:#252c36; border:1px solid #39424f;
         border-radius:6px; padding:8px 14px; cursor:pointer; }
button:hover:not(:disabled) { background:#2f3844; }
button:disabled { opacity:.4; cursor:default; }
button.sel, button.sel:hover:not(:disabled) { background:var(--accent); border-color:var(--accent);
                                              color:#fff; }
button.sel kbd { color:#e3eeff; border-color:#a9c9f5; }
button.primary, button.primary:hover:not(:disabled) { background:var(--ok); color:#fff;
                                                      border-color:var(--ok); }
button.primary:hover:not(:disabled) { filter:brightness(1.1); }
kbd { font:12px ui-monospace, monospace; border:1px solid #4a5462; border-bottom-width:2px;
      border-radius:4px; padding:0 5px; color:var(--muted); }
button kbd { margin-left:6px; }
.hidden { display:none !important; }
header { display:flex; align-items:center; gap:14px; padding:9px 16px; background:var(--panel);
         border-bottom:1px solid var(--border); flex:none; }
header h1 { font-size:16px; font-weight:600; margin:0; white-space:nowrap; overflow:hidden;
            text-overflow:ellipsis; max-width:32vw; }
#who { color:var(--muted); white-space:nowrap; }
.progress { flex:1; display:flex; align-items:center; gap:10px; min-width:150px; }
.bar { flex:1; height:8px; background:#0b0e12; border:1px solid var(--border);
       border-radius:5px; overflow:hidden; }
.bar > div { height:100%; width:0; background:var(--ok); transition:width .15s; }
#count { white-space:nowrap; font-variant-numeric:tabular-nums; }
#start { max-width:580px; margin:7vh auto; background:var(--panel); border:1px solid var(--border);
         border-radius:10px; padding:26px 30px; }
#start h1 { font-size:21px; margin:0 0 12px; }
#start p, #start li { color:#c9d0da; }
#start input { font:inherit; width:100%; padding:9px 11px; margin:6px 0 12px; color:var(--fg);
               background:#0f1216; border:1px solid #3a4350; border-radius:6px; }
#resume button { margin:0 8px 8px 0; }
.error { color:#ff7b72; min-height:1.4em; }
.warnbox { background:#3a2c10; border:1px solid var(--warn); color:#f3d08a; padding:8px 12px;
           border-radius:6px; margin:10px 0; }
#study { flex:1; min-height:0; display:flex; }
.viewer { flex:1; min-width:0; display:flex; flex-direction:column; background:#000; }
.imgbox { flex:1; min-height:0; display:flex; align-items:center; justify-content:center;
          padding:12px; }
.imgbox img { width:100%; height:100%; object-fit:contain; }
#imgerr { color:#ff7b72; padding:20px; }
.caption { text-align:center; color:var(--muted); padding:6px; font-variant-numeric:tabular-nums; }
aside { width:360px; flex:none; background:var(--panel); border-left:1px solid var(--border);
        padding:16px 18px; overflow-y:auto; }
aside h2 { font-size:13px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted);
           margin:16px 0 8px; font-weight:600; }
aside h2:first-child { margin-top:0; }
.scores { display:grid; grid-template-columns:repeat(4, 1fr); gap:6px; }
.scores button { padding:10px 0; font-size:18px; font-weight:600; }
.scale { display:flex; justify-content:space-between; color:var(--muted); font-size:12px;
         margin-top:4px; }
.choice { display:grid; grid-template-columns:1fr 1fr; gap:6px; }
.choice button { padding:11px 0; }
.nav { display:grid; grid-template-columns:1fr 1fr; gap:6px; margin-top:16px; }
#done { background:#123324; border:1px solid var(--ok); padding:10px 12px; border-radius:6px;
        margin-top:14px; }
#cells { display:flex; flex-wrap:wrap; gap:3px; }
#cells button { width:30px; height:24px; padding:0; font-size:11px; border-radius:3px;
                background:#20262e; color:var(--muted); border-color:#323a45; }
#cells button.part { background:#4b3a12; color:#f3d08a; border-color:var(--warn); }
#cells button.full { background:#1c4a34; color:#bfe9d3; border-color:var(--ok); }
#cells button.cur { outline:2px solid #fff; outline-offset:0; }
.legend { color:var(--muted); font-size:12px; margin-top:6px; }
label.auto { display:flex; gap:8px; align-items:center; color:var(--muted); margin-top:14px;
             font-size:13px; }
#saved { color:var(--muted); font-size:12px; }
</style>
</head>
<body>
<noscript><p style="padding:20px">This page needs JavaScript.</p></noscript>

<div id="start">
  <h1>__TITLE__</h1>
  <p>You will see <b id="n-images"></b> brain images, one at a time, in random order. Some are
  real scans, some are synthetic (generated by a model). For each image:</p>
  <ol>
    <li>score its <b>realism</b> from 1 to 4 (4 = most realistic;
      keys <kbd>1</kbd>-<kbd>4</kbd>),</li>
    <li>say whether you think it is <b>real</b> or <b>synthetic</b>
      (keys <kbd>R</kbd> / <kbd>S</kbd>).</li>
  </ol>
  <p>Move with <kbd>&larr;</kbd> <kbd>&rarr;</kbd> or the numbered squares; you can go back and
  change any answer. Your answers are kept in this browser, so you can close the page and
  continue later. At the end click <b>Save CSV</b> and send the downloaded file back.</p>
  <div id="storage-warning" class="warnbox hidden">This browser does not let the page store
  your answers: do not reload or close it before you have clicked Save CSV.</div>
  <div id="resume"></div>
  <label for="name">Your name</label>
  <input id="name" type="text" maxlength="80" autocomplete="off" placeholder="e.g. Reader 1">
  <div id="name-error" class="error"></div>
  <button id="start-btn" class="primary">Start</button>
</div>

<div id="app" class="hidden">
  <header>
    <h1>__TITLE__</h1>
    <span id="who"></span>
    <div class="progress"><div class="bar"><div id="bar"></div></div>
      <span id="count"></span></div>
    <span id="saved"></span>
    <button id="save-btn" class="primary" title="Download your answers as a CSV file">
      Save CSV</button>
    <button id="switch-btn" title="Back to the start page">Switch reader</button>
  </header>
  <div id="study">
    <div class="viewer">
      <div class="imgbox"><img id="img" alt="study image">
        <div id="imgerr" class="hidden"></div></div>
      <div class="caption" id="caption"></div>
    </div>
    <aside>
      <h2>Realism</h2>
      <div class="scores" id="scores">
        <button data-score="1">1<kbd>1</kbd></button><button data-score="2">2<kbd>2</kbd></button>
        <button data-score="3">3<kbd>3</kbd></button><button data-score="4">4<kbd>4</kbd></button>
      </div>
      <div class="scale"><span>1 = not realistic</span><span>4 = most realistic</span></div>
      <h2>This image is</h2>
      <div class="choice">
        <button id="real-btn">Real<kbd>R</kbd></button>
        <button id="synthetic-btn">Synthetic<kbd>S</kbd></button>
      </div>
      <div class="nav">
        <button id="prev-btn">&larr; Previous</button>
        <button id="next-btn">Next &rarr;</button>
      </div>
      <label class="auto"><input type="checkbox" id="auto"> go to the next image once both
        answers are given</label>
      <div id="done" class="hidden">All images are answered. Click <b>Save CSV</b> and send the
        file back. You can still review and change answers.</div>
      <h2>Images</h2>
      <div id="cells"></div>
      <div class="legend">green: answered &middot; amber: half answered &middot; white frame:
        current</div>
    </aside>
  </div>
</div>

<script>
(function () {
  "use strict";
  var KIT = __KIT__;
  var N = KIT.images.length;
  var STORE = "jaxcycle-reader-study/" + KIT.id;
  var storageOk = true;
  var db = load();
  var reader = null, st = null;

  function $(id) { return document.getElementById(id); }
  function blank() { return {current: "", auto: true, readers: {}}; }
  function load() {
    try {
      localStorage.setItem(STORE + "/probe", "1");
      localStorage.removeItem(STORE + "/probe");
      var v = JSON.parse(localStorage.getItem(STORE) || "null");
      if (v && typeof v === "object" && v.readers && typeof v.readers === "object") return v;
    } catch (e) { storageOk = false; }
    return blank();
  }
  function persist() {
    if (!storageOk) return;
    try { localStorage.setItem(STORE, JSON.stringify(db)); }
    catch (e) { storageOk = false; showStorageWarning(); }
  }
  function showStorageWarning() { $("storage-warning").classList.remove("hidden"); }
  function complete(a) {
    return !!a && a.realism >= 1 && a.realism <= 4 && typeof a.real === "boolean";
  }
  function answered() {
    var k = 0;
    for (var i = 0; i < N; i++) if (complete(st.answers[KIT.images[i]])) k++;
    return k;
  }
  function firstIncomplete() {
    for (var i = 0; i < N; i++) if (!complete(st.answers[KIT.images[i]])) return i;
    return -1;
  }

  function showStart() {
    $("app").classList.add("hidden");
    $("start").classList.remove("hidden");
    $("n-images").textContent = N;
    if (!storageOk) showStorageWarning();
    var box = $("resume");
    box.textContent = "";
    var names = Object.keys(db.readers);
    if (names.length) {
      var p = document.createElement("p");
      p.textContent = "Continue a session started in this browser:";
      box.appendChild(p);
      names.forEach(function (name) {
        var b = document.createElement("button");
        var done = 0, ans = db.readers[name].answers || {};
        KIT.images.forEach(function (im) { if (complete(ans[im])) done++; });
        b.textContent = name + " (" + done + "/" + N + ")";
        b.addEventListener("click", function () { start(name); });
        box.appendChild(b);
      });
    }
    $("name").value = db.current || "";
    $("name").focus();
  }

  function start(name) {
    name = String(name || "").trim();
    if (!name) { $("name-error").textContent = "Please enter your name."; return; }
    $("name-error").textContent = "";
    reader = name;
    if (!db.readers[name]) db.readers[name] = {answers: {}, index: 0, saved: ""};
    st = db.readers[name];
    if (!(st.index >= 0 && st.index < N)) st.index = 0;
    db.current = name;
    persist();
    $("start").classList.add("hidden");
    $("app").classList.remove("hidden");
    $("auto").checked = db.auto !== false;
    buildCells();
    render();
  }

  function buildCells() {
    var box = $("cells");
    box.textContent = "";
    for (var i = 0; i < N; i++) {
      var b = document.createElement("button");
      b.textContent = i + 1;
      b.title = KIT.images[i];
      b.addEventListener("click", (function (j) { return function () { go(j); }; })(i));
      box.appendChild(b);
    }
  }

  function render() {
    var name = KIT.images[st.index];
    var a = st.answers[name] || {};
    var img = $("img");
    img.classList.remove("hidden");
    $("imgerr").classList.add("hidden");
    img.src = "images/" + name;
    if (st.index + 1 < N) new Image().src = "images/" + KIT.images[st.index + 1];
    $("caption").textContent = "Image " + (st.index + 1) + " of " + N + "  \u00b7  " + name;
    $("who").textContent = "Reader: " + reader;
    var scoreButtons = $("scores").querySelectorAll("button");
    for (var i = 0; i < scoreButtons.length; i++) {
      var b = scoreButtons[i];
      b.classList.toggle("sel", Number(b.getAttribute("data-score")) === a.realism);
    }
    $("real-btn").classList.toggle("sel", a.real === true);
    $("synthetic-btn").classList.toggle("sel", a.real === false);
    $("prev-btn").disabled = st.index === 0;
    $("next-btn").disabled = st.index === N - 1;
    var k = answered();
    $("count").textContent = k + " / " + N + " answered";
    $("bar").style.width = (100 * k / N) + "%";
    $("done").classList.toggle("hidden", k !== N);
    $("saved").textContent = st.saved ? "saved " + st.saved : "";
    var cells = $("cells").children;
    for (var j = 0; j < N; j++) {
      var c = st.answers[KIT.images[j]];
      cells[j].className = complete(c) ? "full" : (c && (c.realism || typeof c.real === "boolean")
        ? "part" : "");
      if (j === st.index) cells[j].classList.add("cur");
    }
  }

  function go(i) {
    if (i < 0 || i >= N) return;
    st.index = i;
    persist();
    render();
  }

  function answer(field, value) {
    var name = KIT.images[st.index];
    var a = st.answers[name] || {};
    var was = complete(a);
    a[field] = value;
    st.answers[name] = a;
    if (!was && complete(a) && db.auto !== false) {
      if (st.index + 1 < N) st.index += 1;
      else { var f = firstIncomplete(); if (f >= 0) st.index = f; }
    }
    persist();
    render();
  }

  function csvField(s) {
    s = String(s);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function fileName(s) {
    return "reader_" + (s.replace(/[^A-Za-z0-9_-]+/g, "_").replace(/^_+|_+$/g, "") || "anonymous")
      + ".csv";
  }
  function saveCsv() {
    var missing = N - answered();
    if (missing && !window.confirm(missing + " of " + N + " images are not fully answered. " +
                                   "Save anyway? (their fields stay empty)")) return;
    var lines = ["reader,image,realism,judged_real"];
    KIT.images.forEach(function (name) {
      var a = st.answers[name] || {};
      lines.push([csvField(reader), csvField(name), a.realism ? String(a.realism) : "",
                  typeof a.real === "boolean" ? (a.real ? "1" : "0") : ""].join(","));
    });
    var blob = new Blob([lines.join("\n") + "\n"], {type: "text/csv;charset=utf-8"});
    var url = URL.createObjectURL(blob);
    var link = document.createElement("a");
    link.href = url;
    link.download = fileName(reader);
    link.style.display = "none";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(url); link.remove(); }, 2000);
    var now = new Date();
    st.saved = now.toLocaleTimeString();
    persist();
    render();
  }

  $("start-btn").addEventListener("click", function () { start($("name").value); });
  $("name").addEventListener("keydown", function (e) {
    if (e.key === "Enter") start($("name").value);
  });
  $("save-btn").addEventListener("click", saveCsv);
  $("switch-btn").addEventListener("click", function () { reader = st = null; showStart(); });
  $("prev-btn").addEventListener("click", function () { go(st.index - 1); });
  $("next-btn").addEventListener("click", function () { go(st.index + 1); });
  $("real-btn").addEventListener("click", function () { answer("real", true); });
  $("synthetic-btn").addEventListener("click", function () { answer("real", false); });
  $("auto").addEventListener("change", function () { db.auto = this.checked; persist(); });
  var scoreButtons = $("scores").querySelectorAll("button");
  for (var i = 0; i < scoreButtons.length; i++) {
    scoreButtons[i].addEventListener("click", function () {
      answer("realism", Number(this.getAttribute("data-score")));
    });
  }
  $("img").addEventListener("error", function () {
    this.classList.add("hidden");
    var box = $("imgerr");
    box.textContent = "Image " + KIT.images[st.index] + " could not be loaded: keep index.html " +
      "next to its images/ folder (unzip the kit first).";
    box.classList.remove("hidden");
  });
  document.addEventListener("keydown", function (e) {
    if (!st || $("app").classList.contains("hidden")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target && e.target.tagName === "INPUT" && e.target.type === "text") return;
    var k = e.key;
    if (k === "1" || k === "2" || k === "3" || k === "4") answer("realism", Number(k));
    else if (k === "r" || k === "R") answer("real", true);
    else if (k === "s" || k === "S") answer("real", false);
    else if (k === "ArrowRight" || k === "n" || k === "N") go(st.index + 1);
    else if (k === "ArrowLeft" || k === "p" || k === "P") go(st.index - 1);
    else return;
    e.preventDefault();
  });

  showStart();
})();
</script>
</body>
</html>
"""


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _make(args: argparse.Namespace) -> None:
    kit = make_kit(
        image_files(args.real),
        image_files(args.synthetic),
        args.out,
        seed=args.seed,
        title=args.title,
        real_group=args.real_label,
        synthetic_group=args.synthetic_label,
        overwrite=args.overwrite,
    )
    key = read_key(kit / "key.csv")
    n_real = sum(r.truth == REAL for r in key)
    n_pairs = sum(bool(r.pair) for r in key if r.truth == SYNTHETIC)
    print(
        f"wrote {kit}: {len(key)} images ({n_real} real, {len(key) - n_real} synthetic, "
        f"{n_pairs} paired by name)\n"
        f"  send readers {kit / 'readers.zip'} (index.html + images/; they unzip it and open "
        "index.html)\n"
        f"  {kit / 'key.csv'} is the answer key: do not share it"
    )


def _analyze(args: argparse.Namespace) -> None:
    results = analyze(args.key, args.answers)
    print(format_report(results), end="")
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(format_report(results, markdown=True), encoding="utf-8")
        print(f"wrote {path}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `reader-study` (make, analyze) to the `jaxcycle` command's subparsers."""
    study = subparsers.add_parser(
        "reader-study",
        help="blinded realism study for radiologists: make the kit, analyze the answers",
        description="A perceptual study as in the paper (Tables V and VI): readers score real "
        "and synthetic images, shown in random order under blinded names, for realism (1-4) "
        "and say whether each is real, in a self-contained web page; then mean/std/real% per "
        "group and Pearson r, C_b and Lin's CCC per reader.",
    )
    actions = study.add_subparsers(dest="study_action", required=True, metavar="ACTION")

    p = actions.add_parser(
        "make",
        help="build a kit: index.html, blinded images/, readers.zip, key.csv",
        description="Copy the images (re-encoded as PNG without metadata) under blinded, "
        "shuffled names and write the page readers open, readers.zip (what to send them) and "
        "key.csv (the answer key; keep it). Synthetic and real images with the same file name "
        "(without suffix) are recorded as pairs of the same slice.",
    )
    p.add_argument(
        "--real",
        nargs="+",
        required=True,
        metavar="PATH",
        help="ground-truth images: files or folders",
    )
    p.add_argument(
        "--synthetic",
        nargs="+",
        required=True,
        metavar="PATH",
        help="synthetic images: files or folders",
    )
    p.add_argument("--out", required=True, help="kit folder to create")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--title", default=DEFAULT_TITLE, help="title shown to readers")
    p.add_argument(
        "--real-label",
        default=DEFAULT_REAL_GROUP,
        help=f"group name of the real images (default {DEFAULT_REAL_GROUP!r})",
    )
    p.add_argument(
        "--synthetic-label",
        default=DEFAULT_SYNTHETIC_GROUP,
        help="group name of the synthetic images, e.g. the model "
        f"(default {DEFAULT_SYNTHETIC_GROUP!r})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing kit")
    p.set_defaults(func=_make)

    p = actions.add_parser(
        "analyze",
        help="Tables V and VI from key.csv and the readers' CSVs",
        description="Per group: mean and population std (ddof=0) of the realism scores and "
        "share judged real, pooled over readers and per reader. Per reader and synthetic "
        "group: Pearson r, accuracy C_b and Lin's CCC between the scores of the synthetic "
        "images and of their ground-truth counterparts.",
    )
    p.add_argument("key", help="the kit's key.csv")
    p.add_argument("answers", nargs="+", help="reader_<name>.csv files saved from the page")
    p.add_argument("--markdown", metavar="OUT.md", help="also write the report as Markdown")
    p.set_defaults(func=_analyze)
