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

Modules: `kit` makes the kit (the page is `page.html`, package data, filled in per kit);
`analysis` reads the key and the answers and computes and formats Tables V and VI. The
command line is `jaxcycle.cli.reader_study`.
"""

from jaxcycle.paper.reader_study.analysis import (
    ANSWER_COLUMNS,
    KEY_COLUMNS,
    REAL,
    SCORES,
    STD_DDOF,
    SYNTHETIC,
    TRUTHS,
    Agreement,
    Answer,
    KeyRow,
    PathLike,
    agreement,
    analyze,
    format_report,
    read_answers,
    read_key,
)
from jaxcycle.paper.reader_study.kit import (
    DEFAULT_REAL_GROUP,
    DEFAULT_SYNTHETIC_GROUP,
    DEFAULT_TITLE,
    KIT_FILES,
    make_kit,
)

__all__ = [
    "ANSWER_COLUMNS",
    "DEFAULT_REAL_GROUP",
    "DEFAULT_SYNTHETIC_GROUP",
    "DEFAULT_TITLE",
    "KEY_COLUMNS",
    "KIT_FILES",
    "REAL",
    "SCORES",
    "STD_DDOF",
    "SYNTHETIC",
    "TRUTHS",
    "Agreement",
    "Answer",
    "KeyRow",
    "PathLike",
    "agreement",
    "analyze",
    "format_report",
    "make_kit",
    "read_answers",
    "read_key",
]
