"""The pretrained registry and its download path, against an HTTP server on 127.0.0.1."""

import http.server
import threading

import jax
import numpy as np
import pytest

from jaxcycle import pretrained, weights
from jaxcycle.architecture import Architecture

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402

PAPER_LAMBDAS = {
    "style_cezanne": 9,
    "horse2zebra": 10,
    "apple2orange": 10,
    "monet2photo": 10,
    "iphone2dslr_flower": 10,
    "sat2map": 11,
    "facades_label2photo": 11,
    "cityscapes_photo2label": 11,
}


def test_registry_holds_the_papers_eighteen_models():
    from jaxcycle.paper.study import PAPER_TABLES

    table = PAPER_TABLES
    names = {line.split(",")[1] for line in table.read_text().splitlines()[1:]}
    assert set(pretrained.REGISTRY) == names and len(names) == 18
    for name, lam in PAPER_LAMBDAS.items():
        assert pretrained.get(name).lambda_cycle == lam
    for model in pretrained.REGISTRY.values():
        if model.reverse:
            assert pretrained.get(model.reverse).reverse == model.name
    with pytest.raises(pretrained.PretrainedError, match="unknown pretrained model 'horse2cat'"):
        pretrained.get("horse2cat")


class _Server:
    """Serves files from a dict {path: bytes}; counts requests; can lie about lengths."""

    def __init__(self, files):
        self.files, self.requests, self.short = files, [], False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if server.short else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A generator in the published form: ResNet-9, ngf 64, legacy .pth format."""
    model = ref.randomize(ref.build(pretrained.PUBLISHED_ARCHITECTURE), seed=9)
    path = tmp_path_factory.mktemp("pub") / "horse2zebra.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    small = ref.build(Architecture("resnet", 3, 3, 8, n_blocks=2))
    small_path = path.with_name("small.pth")
    torch.save(small.state_dict(), small_path)
    server = _Server(
        {"/m/horse2zebra.pth": path.read_bytes(), "/m/zebra2horse.pth": small_path.read_bytes()}
    )
    yield model, server
    server.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXCYCLE_CACHE", str(tmp_path))
    monkeypatch.delenv("JAXCYCLE_PRETRAINED_URL", raising=False)
    return tmp_path / "pretrained"


def test_download_verifies_and_caches_then_the_name_loads_as_any_pth(published, cache):
    model, server = published
    server.requests.clear()
    path = pretrained.download("horse2zebra", base_url=server.url + "/m", progress=False)
    assert path == cache / "horse2zebra.pth" == pretrained.cached_file("horse2zebra")
    # The name is now a source of weights like the file itself (no network: it is cached).
    variables, arch = weights.load_generator("horse2zebra")
    assert arch == pretrained.PUBLISHED_ARCHITECTURE
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = arch.build().apply(variables, x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # A second call uses the cache and does not touch the network.
    assert pretrained.download("horse2zebra", base_url=server.url + "/m") == path
    assert server.requests == ["/m/horse2zebra.pth"]


def test_every_source_of_weights_takes_one_route(published, cache, tmp_path):
    """A published name, its .pth file and a params directory converted from it give the
    same variables; anything else is refused with the source named."""
    _, server = published
    path = pretrained.download("horse2zebra", base_url=server.url + "/m", progress=False)
    params_dir, _ = weights.convert_pth(path, tmp_path / "params")
    loaded = [weights.load_variables(s) for s in ("horse2zebra", path, params_dir)]
    for variables, arch in loaded[1:]:
        assert arch == loaded[0][1]
        for got, want in zip(
            jax.tree.leaves(variables), jax.tree.leaves(loaded[0][0]), strict=True
        ):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(FileNotFoundError, match="horse2cat: not a params directory, a .pth"):
        weights.load_variables("horse2cat")


def test_url_template_from_environment(published, cache, monkeypatch):
    _, server = published
    monkeypatch.setenv("JAXCYCLE_PRETRAINED_URL", server.url + "/m/{name}.pth")
    assert pretrained.download("horse2zebra", progress=False).is_file()


def test_offline_fails_fast_and_says_where_to_place_the_file(cache):
    with pytest.raises(pretrained.PretrainedError) as e:
        pretrained.download("style_monet", base_url="http://127.0.0.1:9", progress=False)
    message = str(e.value)
    assert "could not download style_monet" in message
    assert str(cache / "style_monet.pth") in message
    assert not list(cache.iterdir())


def test_file_placed_by_hand_is_used_without_network(published, cache):
    model, _ = published
    cache.mkdir(parents=True)
    torch.save(model.state_dict(), cache / "style_monet.pth", _use_new_zipfile_serialization=False)
    path = pretrained.download("style_monet", base_url="http://127.0.0.1:9", progress=False)
    assert path == cache / "style_monet.pth"
    assert weights.load_generator("style_monet")[1].width == 64


def test_wrong_architecture_is_refused(published, cache):
    _, server = published
    with pytest.raises(pretrained.PretrainedError, match="the published zebra2horse is a"):
        pretrained.download("zebra2horse", base_url=server.url + "/m", progress=False)
    assert not (cache / "zebra2horse.pth").exists()


def test_download_cut_short_leaves_nothing(published, cache):
    _, server = published
    server.short = True
    try:
        with pytest.raises(pretrained.PretrainedError, match="cut short"):
            pretrained.download("horse2zebra", base_url=server.url + "/m", progress=False)
    finally:
        server.short = False
    assert not list(cache.iterdir())
