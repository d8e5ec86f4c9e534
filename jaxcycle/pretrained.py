"""The 18 generic pretrained CycleGAN generators of the paper: registry, download, cache.

The reference project (pytorch-CycleGAN-and-pix2pix) publishes each as `NAME.pth`, the
generator only: a ResNet with 9 blocks, ngf 64, instance norm, 3 -> 3 channels, saved in
PyTorch's legacy format. `download(NAME)` fetches it (or takes a copy placed by hand in the
cache), checks that it is such a generator, records its SHA-256 and converts it into a
jaxcycle params directory in the cache:

    $JAXCYCLE_CACHE (default ~/.cache/jaxcycle)/pretrained/NAME.pth    the published file
                                                          /NAME/        converted params

`$JAXCYCLE_PRETRAINED_URL` (or `base_url=`) replaces the published location, e.g. with a
mirror; `{name}` in it is replaced by the model name.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from jaxcycle import checkpoints
from jaxcycle.architecture import Architecture
from jaxcycle.cache import cache_root

PUBLISHED_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
PUBLISHED_ARCHITECTURE = Architecture("resnet", 3, 3, 64, "instance", n_blocks=9)

# The paper's lambda (cycle-consistency weight) by category.
CATEGORY_LAMBDA = {
    "Artistic Style Transfer": 9.0,
    "Animal Images": 10.0,
    "Natural Landscape Images": 10.0,
    "Photography": 10.0,
    "Satellite and Map Images": 11.0,
    "Urban Scenes": 11.0,
}


@dataclass(frozen=True)
class PretrainedModel:
    """One published generator: its name, the paper's category, and its reverse model."""

    name: str
    category: str
    reverse: str | None = None

    @property
    def lambda_cycle(self) -> float:
        """The paper's lambda for this model's category."""
        return CATEGORY_LAMBDA[self.category]


def _pair(a: str, b: str, category: str) -> list[PretrainedModel]:
    return [PretrainedModel(a, category, b), PretrainedModel(b, category, a)]


REGISTRY: dict[str, PretrainedModel] = {
    m.name: m
    for m in [
        *_pair("apple2orange", "orange2apple", "Natural Landscape Images"),
        *_pair("summer2winter_yosemite", "winter2summer_yosemite", "Natural Landscape Images"),
        *_pair("horse2zebra", "zebra2horse", "Animal Images"),
        PretrainedModel("monet2photo", "Photography", "style_monet"),
        PretrainedModel("iphone2dslr_flower", "Photography"),
        PretrainedModel("style_monet", "Artistic Style Transfer", "monet2photo"),
        PretrainedModel("style_cezanne", "Artistic Style Transfer"),
        PretrainedModel("style_ukiyoe", "Artistic Style Transfer"),
        PretrainedModel("style_vangogh", "Artistic Style Transfer"),
        *_pair("sat2map", "map2sat", "Satellite and Map Images"),
        *_pair("cityscapes_photo2label", "cityscapes_label2photo", "Urban Scenes"),
        *_pair("facades_photo2label", "facades_label2photo", "Urban Scenes"),
    ]
}


class PretrainedError(RuntimeError):
    """A pretrained model that is unknown, unreachable or not what was published."""


def get(name: str) -> PretrainedModel:
    """The registry entry for `name`, or a PretrainedError listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise PretrainedError(
            f"unknown pretrained model {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None


def cache_dir() -> Path:
    """Where downloads and converted params are kept."""
    return cache_root() / "pretrained"


def params_dir(name: str) -> Path:
    """The converted params directory of a pretrained model (may not exist yet)."""
    return cache_dir() / get(name).name


def url_for(name: str, base_url: str | None = None) -> str:
    """The download location of a model's published `.pth`."""
    template = base_url or os.environ.get("JAXCYCLE_PRETRAINED_URL") or PUBLISHED_URL
    if "{name}" not in template:
        template = template.rstrip("/") + "/{name}.pth"
    return template.format(name=name)


def _fetch(url: str, dst: Path, timeout: float, progress: bool) -> None:
    """Downloads `url` to `dst` through a temporary file; checks the announced length."""
    part = dst.with_name(dst.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dst.name, disable=not progress
            ) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        if total is not None and part.stat().st_size != total:
            raise PretrainedError(
                f"{url}: download cut short ({part.stat().st_size} of {total} bytes)"
            )
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)


def download(
    name: str,
    base_url: str | None = None,
    timeout: float = 20.0,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Makes the converted params of a pretrained model available; returns their directory.

    Uses, in order: the converted params in the cache; a `.pth` already in the cache (placed
    there by hand, for machines without network); the download. The file must hold the
    published architecture, or nothing is converted.
    """
    from converters.convert import convert_pth  # the converter is only needed here

    model = get(name)
    target = params_dir(name)
    if target.exists() and not force:
        checkpoints.read_metadata(target)  # a clear error if the cache entry is broken
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    pth_file = cache_dir() / f"{model.name}.pth"
    if not pth_file.exists() or force:
        url = url_for(model.name, base_url)
        try:
            _fetch(url, pth_file, timeout, progress)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", e)
            raise PretrainedError(
                f"could not download {model.name} from {url} ({reason}). Without network, "
                f"fetch {model.name}.pth on another machine and place it at {pth_file}, "
                f"then run `jaxcycle pretrained download {model.name}` again"
            ) from None
    try:
        path, arch = convert_pth(
            pth_file,
            target,
            overwrite=True,
            extra={"pretrained": {"name": model.name, "category": model.category}},
        )
    except ValueError as e:
        raise PretrainedError(f"{pth_file} is not a usable {model.name} generator: {e}") from e
    if arch != PUBLISHED_ARCHITECTURE:
        shutil.rmtree(path)
        raise PretrainedError(
            f"{pth_file} holds a {arch.describe()}; the published {model.name} is a "
            f"{PUBLISHED_ARCHITECTURE.describe()}"
        )
    return path
