"""The on-disk embedding cache: keys, hits and misses, corrupt entries, and the one load-or-encode helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from roiprompt.models.backbones.base import ImageEmbedding
from roiprompt.models.cache import EmbeddingCache, encode_cached, image_key, load_or_compute


class _Stub:
    """The two attributes a cache key reads, plus a counting encoder (no model: these tests check the cache)."""

    def __init__(self, name: str = "stub", sha: str | None = "ab" * 32) -> None:
        self.name, self.weights_sha256 = name, sha
        self.calls = 0

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(image, dtype=torch.float32)[None, None]

    def encode_image(self, pixels: torch.Tensor) -> ImageEmbedding:
        self.calls += 1
        return ImageEmbedding(pixels.mean().reshape(1, 1, 1, 1).repeat(1, 2, 2, 2), {"cls": torch.ones(1, 3)})


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (12, 10), dtype=np.uint8)


def test_store_then_load_is_a_hit_with_extras(tmp_path):
    cache, backbone, image = EmbeddingCache(tmp_path), _Stub(), _image()
    assert cache.load(image, backbone) is None and (cache.hits, cache.misses) == (0, 1)
    stored = backbone.encode_image(backbone.preprocess(image))
    cache.store(image, backbone, stored)
    hit = cache.load(image, backbone)
    assert (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(hit.features, stored.features) and torch.equal(hit.extra["cls"], stored.extra["cls"])
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically, no leftovers


def test_keys_follow_pixels_backbone_weights_and_view(tmp_path):
    cache, backbone, image = EmbeddingCache(tmp_path), _Stub(), _image()
    base = cache.path_for(image, backbone)
    assert cache.path_for(image.copy(), backbone) == base  # same pixels, another array: same entry
    assert image_key(image) == image_key(np.array(image))
    others = [cache.path_for(_image(1), backbone),  # other pixels
              cache.path_for(image.astype(np.uint16), backbone),  # same values, other dtype
              cache.path_for(image.reshape(10, 12), backbone),  # same bytes, other shape
              cache.path_for(image, _Stub(name="other")),  # other backbone
              cache.path_for(image, _Stub(sha="cd" * 32)),  # other weights
              cache.path_for(image, backbone, view="tokens16")]  # other view
    assert len({base, *others}) == 7


def test_a_corrupt_or_truncated_entry_is_a_miss_not_a_crash(tmp_path):
    cache, backbone, image = EmbeddingCache(tmp_path), _Stub(), _image()
    cache.store(image, backbone, backbone.encode_image(backbone.preprocess(image)))
    path = cache.path_for(image, backbone)
    path.write_bytes(path.read_bytes()[:20])  # a half-written file
    assert cache.load(image, backbone) is None and cache.misses == 1
    path.write_bytes(b"not a tensor file")
    assert cache.load(image, backbone) is None and cache.misses == 2
    embedding, encoded = encode_cached(backbone, image, cache)  # the helper re-encodes and repairs it
    assert encoded and cache.load(image, backbone) is not None


def test_encode_cached_encodes_once(tmp_path):
    backbone, image = _Stub(), _image()
    cache = EmbeddingCache(tmp_path)
    first, encoded = encode_cached(backbone, image, cache)
    again, encoded_again = encode_cached(backbone, image, EmbeddingCache(tmp_path))  # a new process, same folder
    assert (encoded, encoded_again, backbone.calls) == (True, False, 1)
    assert torch.equal(first.features, again.features)
    without = encode_cached(backbone, image)  # no cache: always encodes, stores nothing
    assert without[1] and backbone.calls == 2


def test_encode_cached_matches_the_encoder_on_a_real_backbone(tmp_path):
    from roiprompt.models.backbones import load_backbone

    backbone = load_backbone("test-litemedsam")
    image = _image()
    with torch.no_grad():
        direct = backbone.encode_image(backbone.preprocess(image)).features
    cached, _ = encode_cached(backbone, image, EmbeddingCache(tmp_path))
    reread, encoded = encode_cached(backbone, image, EmbeddingCache(tmp_path))
    assert not encoded and torch.allclose(cached.features, direct) and torch.equal(reread.features,
                                                                                   cached.features.cpu())


def test_load_or_compute_batches_only_the_missing_views(tmp_path):
    cache, backbone, image = EmbeddingCache(tmp_path), _Stub(), _image()
    asked: list[list[str]] = []

    def compute(views: list[str]) -> list[ImageEmbedding]:
        asked.append(views)
        return [ImageEmbedding(torch.full((1, 1, 1, 1), float(len(v)))) for v in views]

    load_or_compute(cache, image, backbone, ["a"], compute)
    out = load_or_compute(cache, image, backbone, ["a", "bb", "ccc"], compute)
    assert asked == [["a"], ["bb", "ccc"]]  # one call per lookup, with the misses only
    assert [float(e.features) for e in out] == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="2 views"):
        load_or_compute(None, image, backbone, ["x", "y"], lambda views: [])


class _ShapedStub(_Stub):
    """A stub that declares its embedding shapes, as every real backbone does."""

    embedding_shapes = {"features": (2, 2, 2), "cls": (3,)}


class Payload:
    """Any object that is not a tensor needs the unsafe unpickler (arbitrary code on load)."""


_BAD_ENTRIES = {  # name -> what to write over a good entry, and a phrase the warning must contain
    "garbage": (lambda path: path.write_bytes(b"not a tensor file"), "cannot load the entry safely"),
    "truncated": (lambda path: path.write_bytes(path.read_bytes()[:40]), "cannot load the entry safely"),
    "no features": (lambda path: torch.save({"extra.cls": torch.ones(1, 3)}, path), "no 'features' tensor"),
    "not a dict": (lambda path: torch.save([torch.ones(1)], path), "a list, not a dict of tensors"),
    "non-tensor value": (lambda path: torch.save({"features": torch.ones(1, 2, 2, 2), "extra.cls": "x"}, path),
                         "non-tensor values under ['extra.cls']"),
    "pickled object": (lambda path: torch.save({"features": Payload()}, path), "non-tensor objects"),
    "wrong shape": (lambda path: torch.save({"features": torch.ones(1, 2, 4, 4), "extra.cls": torch.ones(1, 3)}, path),
                    "shapes {'features': (1, 2, 4, 4), 'extra.cls': (1, 3)}, but stub produces"),
    "missing extra": (lambda path: torch.save({"features": torch.ones(1, 2, 2, 2)}, path), "but stub produces"),
    "wrong dtype": (lambda path: torch.save({"features": torch.ones(1, 2, 2, 2, dtype=torch.float64),
                                             "extra.cls": torch.ones(1, 3)}, path), "features in torch.float64"),
}


@pytest.mark.parametrize("bad", list(_BAD_ENTRIES))
def test_a_bad_entry_is_logged_once_deleted_and_recomputed(bad, tmp_path, caplog):
    write_bad, phrase = _BAD_ENTRIES[bad]
    backbone, image = _ShapedStub(), _image()
    fresh, _ = encode_cached(backbone, image, EmbeddingCache(tmp_path))
    path = EmbeddingCache(tmp_path).path_for(image, backbone)
    write_bad(path)
    with caplog.at_level("WARNING", logger="roiprompt.models.cache"):
        healed, encoded = encode_cached(backbone, image, EmbeddingCache(tmp_path))  # a later run
        again, encoded_again = encode_cached(backbone, image, EmbeddingCache(tmp_path))  # and the one after
    assert (encoded, encoded_again, backbone.calls) == (True, False, 2)  # recomputed once, then a hit again
    for embedding in (healed, again):
        assert torch.equal(embedding.features, fresh.features) and torch.equal(embedding.extra["cls"],
                                                                               fresh.extra["cls"])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and phrase in warnings[0], warnings
    assert "weights_only" not in warnings[0] and "deleted" in warnings[0]
    assert not list(tmp_path.rglob("*.tmp*"))


def test_only_the_encoder_view_is_held_to_the_backbone_shapes(tmp_path, caplog):
    """Other views hold what their method derived (pooled tokens, hidden states): any float tensors are fine."""
    cache, backbone, image = EmbeddingCache(tmp_path), _ShapedStub(), _image()
    tokens = ImageEmbedding(torch.rand(1, 5, 7))
    cache.store(image, backbone, tokens, view="tokens16")
    with caplog.at_level("WARNING", logger="roiprompt.models.cache"):
        hit = cache.load(image, backbone, view="tokens16")
    assert hit is not None and torch.equal(hit.features, tokens.features) and not caplog.records


def test_a_wrongly_shaped_entry_of_a_real_backbone_is_recomputed(tmp_path, caplog):
    """Before: the entry was returned as a hit and LiteMedSAM's decode raised InputError on every run."""
    from roiprompt.models.backbones import load_backbone

    backbone, image = load_backbone("test-litemedsam"), _image()
    with torch.no_grad():
        direct = backbone.encode_image(backbone.preprocess(image)).features
    cache = EmbeddingCache(tmp_path)
    path = cache.path_for(image, backbone)
    path.parent.mkdir(parents=True)
    torch.save({"features": torch.zeros(1, 8, 16, 16)}, path)  # e.g. written by another architecture's code
    with caplog.at_level("WARNING", logger="roiprompt.models.cache"):
        embedding, encoded = encode_cached(backbone, image, cache)
    assert encoded and torch.allclose(embedding.features, direct)
    assert backbone.decode(embedding, boxes=torch.tensor([[10.0, 10.0, 100.0, 120.0]]))[0].shape == (1, 1, 256, 256)
    assert len(caplog.records) == 1 and "test-litemedsam produces {'features': (1, 32, 64, 64)}" in caplog.text


@pytest.mark.parametrize("name", ["test-litemedsam", "test-sam", "test-sam2", "test-clip"])
def test_backbones_declare_the_shapes_they_encode(name):
    """The cache trusts ``embedding_shapes``: a wrong declaration would recompute every entry on every run."""
    from roiprompt.models.backbones import load_backbone

    backbone = load_backbone(name)
    with torch.no_grad():
        embedding = backbone.encode_image(backbone.preprocess(_image()))
    produced = {"features": tuple(embedding.features.shape[1:]), **{k: tuple(v.shape[1:])
                                                                   for k, v in embedding.extra.items()}}
    assert produced == backbone.embedding_shapes
    assert {v.dtype for v in (embedding.features, *embedding.extra.values())} == {backbone.embedding_dtype}
