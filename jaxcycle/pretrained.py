"""The 18 generic pretrained CycleGAN generators of the paper: registry, download, cache.

The reference project (pytorch-CycleGAN-and-pix2pix) publishes each as `NAME.pth`, the
generator only: a ResNet with 9 blocks, ngf 64, instance norm, 3 -> 3 channels, saved in
PyTorch's legacy format. `download(NAME)` fetches it into the cache (or takes a copy placed
there by hand) and checks that it holds such a generator:

    $JAXCYCLE_CACHE (default ~/.cache/jaxcycle)/pretrained/NAME.pth

A published name is then read like any other `.pth` (`jaxcycle.weights.load_variables`).
`$JAXCYCLE_PRETRAINED_URL` (or `base_url=`) replaces the published location, e.g. with a
mirror; `{name}` in it is replaced by the model name.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from converters import pth
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
    """Where the downloaded `.pth` files are kept."""
    return cache_root() / "pretrained"


def cached_file(name: str) -> Path:
    """A pretrained model's `.pth` in the cache (may not exist yet)."""
    return cache_dir() / f"{get(name).name}.pth"


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


def _check_published(path: Path, model: PretrainedModel) -> None:
    """Raises PretrainedError unless `path` holds the published architecture."""
    try:
        arch = Architecture.of_state_dict(pth.load_state_dict(path))
    except ValueError as e:
        raise PretrainedError(f"{path} is not a usable {model.name} generator: {e}") from None
    if arch != PUBLISHED_ARCHITECTURE:
        raise PretrainedError(
            f"{path} holds a {arch.describe()}; the published {model.name} is a "
            f"{PUBLISHED_ARCHITECTURE.describe()}"
        )


def download(
    name: str,
    base_url: str | None = None,
    timeout: float = 20.0,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Makes a pretrained model's `.pth` available in the cache; returns its path.

    Uses the file already in the cache (downloaded before, or placed there by hand for
    machines without network), else downloads it. The file must hold the published
    architecture: a downloaded file that does not is removed again.
    """
    model = get(name)
    target = cached_file(name)
    if target.exists() and not force:
        _check_published(target, model)
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    url = url_for(model.name, base_url)
    try:
        _fetch(url, target, timeout, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PretrainedError(
            f"could not download {model.name} from {url} ({reason}). Without network, "
            f"fetch {model.name}.pth on another machine and place it at {target}, "
            f"then run `jaxcycle pretrained download {model.name}` again"
        ) from None
    try:
        _check_published(target, model)
    except PretrainedError:
        target.unlink()
        raise
    return target
