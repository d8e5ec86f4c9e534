"""The reader study's analysis: the kit's key and the readers' CSVs read and checked, Tables V
(realism and share judged real per group) and VI (agreement per reader: Pearson r, C_b, Lin's
CCC), and the report as text or Markdown. The definitions are in the package's docstring."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REAL, SYNTHETIC = "real", "synthetic"
TRUTHS = (REAL, SYNTHETIC)
KEY_COLUMNS = ("image", "original", "truth", "group", "pair")
ANSWER_COLUMNS = ("reader", "image", "realism", "judged_real")
SCORES = (1, 2, 3, 4)
STD_DDOF = 0

PathLike = str | os.PathLike


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
