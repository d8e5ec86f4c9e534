"""Reader study: agreement statistics by hand, the analysis tables, input validation, the kit
(blinding, shuffling, key, no overwrite) and the page driven in a real headless Chromium.

The browser test needs `apt-get install -y chromium chromium-driver` and `pip install selenium`;
it is skipped without them, unless JAXCYCLE_REQUIRE_BROWSER=1 (then it fails).
"""

import argparse
import csv
import io
import math
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from PIL import Image, PngImagePlugin

from jaxcycle.cli import reader_study as reader_study_cli
from jaxcycle.data.images import image_files
from jaxcycle.paper import reader_study as rs

# ---------------------------------------------------------------------------------------------
# Agreement by hand
# ---------------------------------------------------------------------------------------------

# Five pairs: x = a reader's realism scores of five synthetic images, y = those of their
# ground-truth counterparts.
X = [4, 3, 4, 2, 3]
Y = [4, 4, 4, 3, 2]


def test_agreement_by_hand():
    # means: mx = 16/5 = 3.2, my = 17/5 = 3.4
    # deviations x - mx: 0.8, -0.2, 0.8, -1.2, -0.2
    # deviations y - my: 0.6, 0.6, 0.6, -0.4, -1.4
    sxx = (0.64 + 0.04 + 0.64 + 1.44 + 0.04) / 5  # = 2.8 / 5 = 0.56
    syy = (0.36 + 0.36 + 0.36 + 0.16 + 1.96) / 5  # = 3.2 / 5 = 0.64
    sxy = (0.48 - 0.12 + 0.48 + 0.48 + 0.28) / 5  # = 1.6 / 5 = 0.32
    bias2 = (3.2 - 3.4) ** 2  # = 0.04
    r = sxy / math.sqrt(sxx * syy)  # 0.32 / sqrt(0.3584) = sqrt(2/7) = 0.534522...
    ccc = 2 * sxy / (sxx + syy + bias2)  # 0.64 / 1.24 = 16/31 = 0.516129...
    c_b = 2 * math.sqrt(sxx * syy) / (sxx + syy + bias2)  # 1.197330 / 1.24 = 0.965589...
    assert r == pytest.approx(math.sqrt(2 / 7), abs=1e-12)
    assert ccc == pytest.approx(16 / 31, abs=1e-12)
    assert c_b == pytest.approx(0.9655889, abs=1e-6)

    a = rs.agreement(X, Y)
    assert (a.n, a.mean_x, a.mean_y) == (5, pytest.approx(3.2), pytest.approx(3.4))
    assert a.sd_x == pytest.approx(math.sqrt(0.56)) and a.sd_y == pytest.approx(0.8)
    assert a.pearson_r == pytest.approx(r, abs=1e-12)
    assert a.ccc == pytest.approx(ccc, abs=1e-12)
    assert a.c_b == pytest.approx(c_b, abs=1e-12)
    assert a.ccc == pytest.approx(a.pearson_r * a.c_b, abs=1e-12)
    assert a.pearson_r == pytest.approx(scipy.stats.pearsonr(X, Y).statistic, abs=1e-12)


def test_agreement_more_cases():
    rng = np.random.default_rng(3)
    x = rng.integers(1, 5, 40).tolist()
    y = np.clip(np.asarray(x) + rng.integers(-1, 2, 40), 1, 4).tolist()
    a = rs.agreement(x, y)
    assert a.pearson_r == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-12)
    cov = np.cov(x, y, ddof=0)
    ccc = 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (np.mean(x) - np.mean(y)) ** 2)
    assert a.ccc == pytest.approx(ccc, abs=1e-12)
    # identical scores: perfect agreement; a shift lowers C_b and CCC, not r
    same = rs.agreement(X, X)
    assert (same.pearson_r, same.c_b, same.ccc) == (pytest.approx(1), pytest.approx(1), 1)
    shifted = rs.agreement(X, [v - 1 for v in X])
    assert shifted.pearson_r == pytest.approx(1) and shifted.ccc < 1
    # one side constant: r undefined, C_b = CCC = 0; both constant and equal: all undefined
    flat = rs.agreement([3, 3, 3, 3, 3], [4, 4, 3, 4, 4])
    assert math.isnan(flat.pearson_r) and flat.c_b == 0 and flat.ccc == 0
    both = rs.agreement([4, 4, 4], [4, 4, 4])
    assert all(math.isnan(v) for v in (both.pearson_r, both.c_b, both.ccc))
    with pytest.raises(ValueError, match="2 pairs"):
        rs.agreement([4], [4])


# ---------------------------------------------------------------------------------------------
# analyze: Tables V and VI
# ---------------------------------------------------------------------------------------------


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def study(tmp_path):
    """A key of 6 synthetic (5 paired) and 5 real images and two readers' answers."""
    key = [[f"s{i}.png", f"/data/fake/{i}.png", "synthetic", "iphone2dslr_flower", f"g{i}.png"]
           for i in range(1, 6)]  # fmt: skip
    key.append(["s6.png", "/data/fake/6.png", "synthetic", "iphone2dslr_flower", ""])
    key += [[f"g{i}.png", f"/data/real/{i}.png", "real", "Ground truth", f"g{i}.png"]
            for i in range(1, 6)]  # fmt: skip
    key_csv = _write_csv(tmp_path / "key.csv", rs.KEY_COLUMNS, key)
    a = {f"s{i}.png": (X[i - 1], [1, 0, 1, 0, 1][i - 1]) for i in range(1, 6)}
    a["s6.png"] = (1, 0)
    a.update({f"g{i}.png": (Y[i - 1], [1, 1, 1, 1, 0][i - 1]) for i in range(1, 6)})
    b = {f"s{i}.png": (3, 0) for i in range(1, 6)}
    b["s6.png"] = (2, 0)
    b.update({f"g{i}.png": ([4, 4, 3, 4, 4][i - 1], 1) for i in range(1, 6)})
    files = []
    for name, answers in (("Radiologist 1", a), ("Radiologist 2", b)):
        rows = [[name, image, s, j] for image, (s, j) in answers.items()]
        files.append(_write_csv(tmp_path / f"reader_{name[-1]}.csv", rs.ANSWER_COLUMNS, rows))
    return key_csv, files


def test_analyze_by_hand(study):
    key_csv, files = study
    res = rs.analyze(key_csv, files)
    assert res["readers"] == ["Radiologist 1", "Radiologist 2"]
    assert (res["n_images"], res["n_real"], res["n_synthetic"], res["n_pairs"]) == (11, 5, 6, 5)
    assert list(res["groups"]) == ["iphone2dslr_flower", "Ground truth"]  # model first

    # Table V, pooled over both readers. Model: scores 4,3,4,2,3,1 and 3,3,3,3,3,2.
    g = res["groups"]["iphone2dslr_flower"]
    mean = (17 + 17) / 12
    var = (55 + 49) / 12 - mean**2  # population variance: mean of squares - square of mean
    assert (g["n_images"], g["n_ratings"]) == (6, 12)
    assert g["mean"] == pytest.approx(mean) and g["std"] == pytest.approx(math.sqrt(var))
    assert g["std"] == pytest.approx(np.std([4, 3, 4, 2, 3, 1, 3, 3, 3, 3, 3, 2], ddof=0))
    assert g["real_pct"] == pytest.approx(100 * 3 / 12)
    # Ground truth: 4,4,4,3,2 and 4,4,3,4,4 -> mean 3.6, variance 134/10 - 3.6^2 = 0.44
    g = res["groups"]["Ground truth"]
    assert g["mean"] == pytest.approx(3.6) and g["std"] == pytest.approx(math.sqrt(0.44))
    assert g["real_pct"] == pytest.approx(90.0)

    r1, r2 = res["per_reader"]["Radiologist 1"], res["per_reader"]["Radiologist 2"]
    assert r1["correct_pct"] == pytest.approx(100 * 7 / 11)  # s2, s4, s6 and g1-g4 right
    assert r2["correct_pct"] == pytest.approx(100.0)
    assert r1["groups"]["Ground truth"]["mean"] == pytest.approx(17 / 5)
    # Table VI: reader 1's pairs are exactly X, Y above (s6 has no counterpart)
    a1 = r1["agreement"]["iphone2dslr_flower"]
    assert a1["n_pairs"] == 5
    assert a1["pearson_r"] == pytest.approx(math.sqrt(2 / 7))
    assert a1["ccc"] == pytest.approx(16 / 31)
    assert a1["c_b"] == pytest.approx(0.64 / 1.24 / math.sqrt(2 / 7))
    a2 = r2["agreement"]["iphone2dslr_flower"]
    assert math.isnan(a2["pearson_r"]) and a2["ccc"] == 0 and a2["c_b"] == 0

    text = rs.format_report(res)
    assert "2.83" in text and "0.80" in text and "25.00%" in text and "90.00%" in text
    assert "0.535" in text and "0.516" in text and "0.966" in text and "n/a" in text
    assert "ddof=0" in text
    md = rs.format_report(res, markdown=True)
    assert "| iphone2dslr_flower | synthetic | 6 | 12 | 2.83 | 0.80 | 25.00% |" in md
    assert "| Radiologist 1 | iphone2dslr_flower | 5 | 0.535 | 0.966 | 0.516 |" in md


def _answers(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize(
    ("line", "edit", "message"),
    [
        (3, lambda r: r.__setitem__(1, "img_9999.png"), "line 3: unknown image 'img_9999.png'"),
        (2, lambda r: r.__setitem__(2, ""), "line 2: no realism score"),
        (4, lambda r: r.__setitem__(3, ""), "line 4: no real/synthetic judgement"),
        (5, lambda r: r.__setitem__(2, "5"), "line 5: realism '5' is outside 1-4"),
        (5, lambda r: r.__setitem__(2, "0"), "line 5: realism '0' is outside 1-4"),
        (5, lambda r: r.__setitem__(2, "2.5"), "line 5: realism '2.5' is outside 1-4"),
        (6, lambda r: r.__setitem__(2, "good"), "line 6: realism 'good' is not a number"),
        (6, lambda r: r.__setitem__(3, "maybe"), "line 6: judged_real 'maybe'"),
        (7, lambda r: r.__setitem__(0, "Someone else"), "line 7: reader 'Someone else' differs"),
        (3, lambda r: r.__setitem__(1, "s1.png"), "line 3: image 's1.png' answered twice"),
    ],
)
def test_reader_csv_errors_name_file_and_line(study, line, edit, message):
    key_csv, files = study
    rows = _answers(files[0])
    edit(rows[line - 1])
    bad = _write_csv(files[0].with_name("bad.csv"), rows[0], rows[1:])
    with pytest.raises(ValueError, match=re.escape(f"{bad}: {message}")):
        rs.analyze(key_csv, [bad, files[1]])


def test_reader_csv_file_errors(study, tmp_path):
    key_csv, files = study
    rows = _answers(files[0])
    short = _write_csv(tmp_path / "short.csv", rows[0], rows[1:-2])
    with pytest.raises(ValueError, match=re.escape(f"{short}: 2 image(s) of the key not answ")):
        rs.analyze(key_csv, [short])
    cols = _write_csv(tmp_path / "cols.csv", ["reader", "image", "score"], [])
    with pytest.raises(ValueError, match=re.escape(f"{cols}: missing column(s) realism")):
        rs.analyze(key_csv, [cols])
    with pytest.raises(ValueError, match="also the reader of"):
        rs.analyze(key_csv, [files[0], files[0]])
    with pytest.raises(FileNotFoundError, match="nope.csv: no such file"):
        rs.analyze(key_csv, [tmp_path / "nope.csv"])
    with pytest.raises(ValueError, match="no reader CSVs"):
        rs.analyze(key_csv, [])
    key = _answers(key_csv)
    key[3][2] = "fake"
    bad_key = _write_csv(tmp_path / "bad_key.csv", key[0], key[1:])
    with pytest.raises(ValueError, match=re.escape(f"{bad_key}: line 4: truth 'fake'")):
        rs.analyze(bad_key, files)


# ---------------------------------------------------------------------------------------------
# make_kit
# ---------------------------------------------------------------------------------------------


def _images(folder, names, seed, size=24, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        if mode == "I;16":
            arr = rng.integers(0, 65536, (size, size), dtype=np.uint16)
        elif mode == "RGB":
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:
            arr = rng.integers(0, 256, (size, size), dtype=np.uint8)
        info = PngImagePlugin.PngInfo()
        info.add_text("Source", f"{folder.name}/{name}")  # must not reach the kit
        Image.fromarray(arr).save(folder / name, pnginfo=info)
        paths.append(folder / name)
    return paths


def _key(kit):
    with open(kit / "key.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def inputs(tmp_path):
    names = [f"slice_{i:03d}.png" for i in range(8)]
    real = _images(tmp_path / "gt", names, 0)
    synthetic = _images(tmp_path / "fake", names[:6] + ["extra_a.png", "extra_b.png"], 1)
    return real, synthetic


def test_make_kit_blinded_key_and_pairs(tmp_path, inputs):
    real, synthetic = inputs
    kit = rs.make_kit(real, synthetic, tmp_path / "kit", seed=3, title="MR -> CT <study>")
    assert kit == tmp_path / "kit"
    assert sorted(p.name for p in kit.iterdir()) == ["images", "index.html", "key.csv",
                                                      "readers.zip"]  # fmt: skip
    images = sorted(p.name for p in (kit / "images").iterdir())
    assert images == [f"img_{i:04d}.png" for i in range(1, 17)]
    key = _key(kit)
    assert [r["image"] for r in key] == images  # the key lists them in the page's order
    by_original = {Path(r["original"]): r for r in key}
    assert set(by_original) == {p.resolve() for p in real + synthetic}  # complete, once each
    for p in real:
        assert by_original[p.resolve()]["truth"] == "real"
        assert by_original[p.resolve()]["group"] == "Ground truth"
    for p in synthetic:
        assert by_original[p.resolve()]["truth"] == "synthetic"
        assert by_original[p.resolve()]["group"] == "Synthetic"
    # pairs: same file name; the pair value is the real image's blinded name
    for p in synthetic:
        row = by_original[p.resolve()]
        counterpart = tmp_path / "gt" / p.name
        if counterpart.exists():
            assert row["pair"] == by_original[counterpart.resolve()]["image"]
        else:
            assert row["pair"] == ""
    assert sum(bool(r["pair"]) for r in key if r["truth"] == "synthetic") == 6
    assert sum(bool(r["pair"]) for r in key if r["truth"] == "real") == 6
    # pixels unchanged, metadata gone
    for r in key:
        src, dst = Image.open(r["original"]), Image.open(kit / "images" / r["image"])
        assert np.array_equal(np.asarray(src), np.asarray(dst))
        assert (
            "Source" not in dst.info and b"Source" not in (kit / "images" / r["image"]).read_bytes()
        )
    # the page: self-contained, knows nothing of the key or the originals, title escaped
    page = (kit / "index.html").read_text()
    assert "key.csv" not in page and "slice_" not in page and "gt/" not in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "http://" not in page and "https://" not in page
    assert "MR -&gt; CT &lt;study&gt;" in page and "<study>" not in page
    with zipfile.ZipFile(kit / "readers.zip") as z:
        assert sorted(z.namelist()) == sorted(
            ["reader_study/index.html"] + [f"reader_study/images/{n}" for n in images]
        )
        assert z.read("reader_study/index.html").decode() == page


def test_make_kit_shuffle_is_seeded(tmp_path, inputs):
    real, synthetic = inputs

    def mapping(kit):
        return {r["original"]: r["image"] for r in _key(kit)}

    a = mapping(rs.make_kit(real, synthetic, tmp_path / "a", seed=5))
    b = mapping(rs.make_kit(real, synthetic, tmp_path / "b", seed=5))
    c = mapping(rs.make_kit(real, synthetic, tmp_path / "c", seed=6))
    assert a == b and a != c
    assert (tmp_path / "a" / "index.html").read_text() == (tmp_path / "b/index.html").read_text()
    # order reveals nothing: the real images are not simply the first ones
    order = [r["truth"] for r in _key(tmp_path / "a")]
    assert order != sorted(order) and order != sorted(order, reverse=True)


def test_make_kit_never_overwrites(tmp_path, inputs):
    real, synthetic = inputs
    kit = rs.make_kit(real, synthetic, tmp_path / "kit")
    before = {p: p.read_bytes() for p in kit.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="overwrite"):
        rs.make_kit(real[:3], synthetic[:3], kit)
    assert {p: p.read_bytes() for p in kit.rglob("*") if p.is_file()} == before
    rs.make_kit(real[:3], synthetic[:3], kit, overwrite=True)
    assert len(_key(kit)) == 6 and len(list((kit / "images").iterdir())) == 6
    (kit / "reader_A.csv").write_text("reader,image,realism,judged_real\n")
    with pytest.raises(FileExistsError, match="reader_A.csv"):
        rs.make_kit(real, synthetic, kit, overwrite=True)
    assert len(_key(kit)) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    empty = tmp_path / "empty"
    empty.mkdir()
    rs.make_kit(real, synthetic, empty)  # an empty folder is fine


def test_make_kit_groups_modes_and_errors(tmp_path, inputs):
    real, synthetic = inputs
    rgb = _images(tmp_path / "rgb", ["x.png"], 2, mode="RGB")
    deep = _images(tmp_path / "deep", ["y.png"], 3, mode="I;16")
    groups = {synthetic[0]: "model B", rgb[0]: "model B"}
    with pytest.warns(UserWarning, match="differ in size or pixel format"):
        kit = rs.make_kit(real + deep, synthetic + rgb, tmp_path / "kit", groups=groups)
    key = {Path(r["original"]).name: r for r in _key(kit)}
    assert key["x.png"]["group"] == "model B" and key["slice_001.png"]["truth"] == "real"
    for name, folder in (("x.png", "rgb"), ("y.png", "deep")):
        src = np.asarray(Image.open(tmp_path / folder / name))
        dst = np.asarray(Image.open(kit / "images" / key[name]["image"]))
        assert src.dtype == dst.dtype and np.array_equal(src, dst)

    missing = tmp_path / "gt" / "nope.png"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}: no such image file")):
        rs.make_kit([*real, missing], synthetic, tmp_path / "k1")
    broken = tmp_path / "gt" / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(ValueError, match=re.escape(f"{broken}: not a readable image")):
        rs.make_kit(real, [*synthetic, broken], tmp_path / "k2")
    assert not (tmp_path / "k1").exists() and not (tmp_path / "k2").exists()
    with pytest.raises(ValueError, match="given twice"):
        rs.make_kit(real, [real[0]], tmp_path / "k3")
    with pytest.raises(ValueError, match="both real and synthetic"):
        rs.make_kit(real, synthetic, tmp_path / "k4", groups={real[0]: "Synthetic"})
    with pytest.raises(ValueError, match="empty"):
        rs.make_kit([], synthetic, tmp_path / "k5")
    (tmp_path / "no_images").mkdir()
    with pytest.raises(ValueError, match="no_images: no images"):
        image_files([tmp_path / "no_images"])
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or folder"):
        image_files([tmp_path / "nowhere"])


def test_make_kit_explicit_pairs(tmp_path, inputs):
    real, synthetic = inputs
    kit = rs.make_kit(real, synthetic[6:], tmp_path / "kit", pairs={synthetic[6]: real[7]})
    key = {Path(r["original"]).name: r for r in _key(kit)}
    assert key["extra_a.png"]["pair"] == key["slice_007.png"]["image"]
    assert key["extra_b.png"]["pair"] == ""


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _cli(argv):
    parser = argparse.ArgumentParser(prog="jaxcycle")
    reader_study_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_make_and_analyze(tmp_path, inputs, capsys):
    kit = tmp_path / "kit"
    _cli(["reader-study", "make", "--real", str(tmp_path / "gt"), "--synthetic",
          str(tmp_path / "fake"), "--out", str(kit), "--seed", "2", "--synthetic-label",
          "iphone2dslr_flower"])  # fmt: skip
    out = capsys.readouterr().out
    assert "16 images (8 real, 8 synthetic, 6 paired by name)" in out and "readers.zip" in out
    with pytest.raises(FileExistsError):
        _cli(["reader-study", "make", "--real", str(tmp_path / "gt"), "--synthetic",
              str(tmp_path / "fake"), "--out", str(kit)])  # fmt: skip
    key = _key(kit)
    answers = [["R1", r["image"], 4 if r["truth"] == "real" else 1 + i % 4, 1] for i, r in
               enumerate(key)]  # fmt: skip
    reader = _write_csv(tmp_path / "reader_R1.csv", rs.ANSWER_COLUMNS, answers)
    _cli(["reader-study", "analyze", str(kit / "key.csv"), str(reader), "--markdown",
          str(tmp_path / "out" / "report.md")])  # fmt: skip
    out = capsys.readouterr().out
    assert "iphone2dslr_flower" in out and "Ground truth" in out and "100.00%" in out
    assert (
        "| Reader | Group | Pairs | Pearson r | C_b | CCC |"
        in (tmp_path / "out" / "report.md").read_text()
    )
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no images"):
        _cli(["reader-study", "make", "--real", str(tmp_path / "none"), "--synthetic",
              str(tmp_path / "fake"), "--out", str(tmp_path / "k2")])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The page in a real browser
# ---------------------------------------------------------------------------------------------

CHROMIUM = os.environ.get("JAXCYCLE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("JAXCYCLE_CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser_or_skip(download_dir, profile_dir):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (
            f"browser test needs {', '.join(missing)}: apt-get install -y chromium "
            "chromium-driver && pip install selenium"
        )
        if os.environ.get("JAXCYCLE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1400,900",
            f"--user-data-dir={profile_dir}"]  # fmt: skip
    for arg in args:
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(download_dir), "download.prompt_for_download": False},
    )
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting in the browser")


def test_page_in_headless_chromium(tmp_path, inputs):
    from_dir = tmp_path / "downloads"
    from_dir.mkdir()
    driver = _browser_or_skip(from_dir, tmp_path / "profile")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    real, synthetic = inputs
    kit = rs.make_kit(real, synthetic, tmp_path / "kit", seed=1)
    names = [r["image"] for r in _key(kit)]
    n = len(names)

    def current():
        src = driver.find_element(By.ID, "img").get_attribute("src")
        return src.rsplit("/", 1)[-1]

    def count():
        return driver.find_element(By.ID, "count").text

    def press(key):
        driver.find_element(By.TAG_NAME, "body").send_keys(key)

    expected = {name: (1 + i % 4, i % 3 != 0) for i, name in enumerate(names)}
    try:
        driver.get((kit / "index.html").resolve().as_uri())
        driver.find_element(By.ID, "start-btn").click()  # no name: refused
        assert "enter your name" in driver.find_element(By.ID, "name-error").text
        driver.find_element(By.ID, "name").send_keys("Dr. O'Neil, MD")
        driver.find_element(By.ID, "start-btn").click()
        assert count() == f"0 / {n} answered"
        half = n // 2
        for i in range(n):
            if i == half:  # reload mid-way: the answers survive (localStorage)
                driver.refresh()
                buttons = driver.find_elements(By.CSS_SELECTOR, "#resume button")
                assert [b.text for b in buttons] == [f"Dr. O'Neil, MD ({half}/{n})"]
                buttons[0].click()
                assert count() == f"{half} / {n} answered"
            name = current()
            assert name == names[i]  # shown in the kit's (shuffled) order, auto-advancing
            score, real_ = expected[name]
            if i % 2:  # keyboard
                press(str(score))
                press("r" if real_ else "s")
            else:  # buttons
                driver.find_element(By.CSS_SELECTOR, f'#scores [data-score="{score}"]').click()
                driver.find_element(By.ID, "real-btn" if real_ else "synthetic-btn").click()
        assert count() == f"{n} / {n} answered"
        assert driver.find_element(By.ID, "done").is_displayed()
        # go back and change answers: arrow keys, the Previous button, the numbered squares
        press(Keys.ARROW_LEFT)
        driver.find_element(By.ID, "prev-btn").click()
        assert current() == names[n - 3]
        press("1")
        press("r")
        expected[names[n - 3]] = (1, True)
        driver.find_elements(By.CSS_SELECTOR, "#cells button")[1].click()
        assert current() == names[1]
        driver.find_element(By.ID, "synthetic-btn").click()
        expected[names[1]] = (expected[names[1]][0], False)
        assert current() == names[1]  # changing a complete answer does not move on
        assert "sel" in driver.find_element(By.ID, "synthetic-btn").get_attribute("class")

        driver.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("JAXCYCLE_SCREENSHOT_DIR"):
            shutil.copy(tmp_path / "page.png", os.environ["JAXCYCLE_SCREENSHOT_DIR"])
        assert Image.open(tmp_path / "page.png").size[0] > 0

        driver.find_element(By.ID, "save-btn").click()
        saved = _wait(lambda: [p for p in from_dir.glob("*.csv")])
        assert [p.name for p in saved] == ["reader_Dr_O_Neil_MD.csv"]
        _wait(lambda: saved[0].read_text().count("\n") == n + 1)
    finally:
        driver.quit()

    reader, answers = rs.read_answers(saved[0], rs.read_key(kit / "key.csv"))
    assert reader == "Dr. O'Neil, MD"
    assert {k: (a.realism, a.judged_real) for k, a in answers.items()} == expected
    res = rs.analyze(kit / "key.csv", saved)
    assert res["readers"] == [reader] and res["groups"]["Ground truth"]["n_ratings"] == 8
    assert res["per_reader"][reader]["agreement"]["Synthetic"]["n_pairs"] == 6


def test_page_incomplete_save_asks_first(tmp_path, inputs):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _browser_or_skip(downloads, tmp_path / "profile")
    from selenium.webdriver.common.by import By

    real, synthetic = inputs
    kit = rs.make_kit(real[:2], synthetic[:2], tmp_path / "kit")
    try:
        driver.get((kit / "index.html").resolve().as_uri())
        driver.find_element(By.ID, "name").send_keys("R2\n")
        driver.find_element(By.TAG_NAME, "body").send_keys("3")
        driver.find_element(By.ID, "save-btn").click()
        alert = driver.switch_to.alert
        assert "4 of 4 images are not fully answered" in alert.text
        alert.dismiss()
        time.sleep(0.3)
        assert not list(downloads.iterdir())
        driver.find_element(By.ID, "save-btn").click()
        driver.switch_to.alert.accept()
        saved = _wait(lambda: list(downloads.glob("*.csv")))
        _wait(lambda: saved[0].read_text().count("\n") == 5)
    finally:
        driver.quit()
    rows = list(csv.DictReader(io.StringIO(saved[0].read_text())))
    assert [r["realism"] for r in rows] == ["3", "", "", ""] and rows[0]["judged_real"] == ""
    with pytest.raises(ValueError, match=re.escape(f"{saved[0]}: line 2: no real/synthetic")):
        rs.analyze(kit / "key.csv", saved)
