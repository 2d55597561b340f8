import pytest
import torch
import transformers
from torch.nn import functional

from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.model.support_attention import mix, support_weights
from supportset.train.objective import Batch, Objective


class NoContrast(torch.nn.Module):
    """A contrastive loss of zero, to look at the captioning gradients alone."""

    def forward(self, video, text, owners=None):
        return (video.sum() + text.sum()) * 0


def unit(rows: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return functional.normalize(
        torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1
    )


def test_cross_never_attends_to_itself_and_rows_sum_to_one():
    weights = support_weights(unit(5, seed=1), unit(5, seed=2), "cross", 0.1)
    assert torch.all(weights.diagonal() == 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(5))


def test_identity_full_and_hybrid():
    c_t, c_v = unit(4, seed=1), unit(4, seed=2)
    assert torch.equal(support_weights(c_t, c_v, "identity", 0.1), torch.eye(4))
    full = support_weights(c_t, c_v, "full", 0.1)
    torch.testing.assert_close(full, (c_t @ c_v.T / 0.1).softmax(dim=1))
    torch.testing.assert_close(
        support_weights(c_t, c_v, "hybrid", 0.1), 0.5 * (torch.eye(4) + full)
    )


def test_support_set_size_limits_each_row():
    generator = torch.Generator().manual_seed(0)
    weights = support_weights(unit(8, seed=1), unit(8, seed=2), "cross", 0.1, 3, generator)
    assert torch.all((weights > 0).sum(dim=1) == 3)
    assert torch.all(weights.diagonal() == 0)


def test_mix_weights_sequences_and_unions_masks():
    e_v = torch.arange(2 * 3 * 1, dtype=torch.float).view(2, 3, 1)  # video 0: 0,1,2; video 1: 3,4,5
    valid = torch.tensor([[True, True, False], [True, True, True]])
    weights = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    e_bar, mixed_valid = mix(weights, e_v, valid)
    torch.testing.assert_close(e_bar[:, :, 0], torch.tensor([[3.0, 4.0, 5.0], [1.5, 2.5, 2.5]]))
    assert mixed_valid.tolist() == [[True, True, True], [True, True, True]]
    _, only_first = mix(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), e_v, valid)
    assert only_first.tolist() == [[True, True, False]] * 2


@pytest.fixture(scope="module")
def tiny_t5():
    config = transformers.T5Config(
        vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.T5ForConditionalGeneration(config).eval()


def test_decoder_loss_equals_t5_captioning_loss(tiny_t5):
    decoder = CaptionDecoder(tiny_t5, 16).eval()
    with torch.no_grad():
        decoder.projection.weight.copy_(torch.eye(16))
        decoder.projection.bias.zero_()
    memory = torch.randn(3, 5, 16)
    memory_valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False]])
    tokens = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0], [4, 1, 0, 0]])
    token_valid = tokens != 0
    nll, count = decoder(memory, memory_valid, tokens, token_valid)
    ours = nll / count
    reference = tiny_t5(
        encoder_outputs=(memory,),
        attention_mask=memory_valid.long(),
        labels=tokens.masked_fill(~token_valid, -100),
    ).loss
    torch.testing.assert_close(ours, reference)


def test_cross_captioning_gradients_reach_both_heads(tiny_t5):
    torch.manual_seed(0)
    model = SupportSetModel(ModelConfig(dim=16, heads=2, ffn_dim=32, layers=1, dropout=0.0), 6, 5)
    decoder = CaptionDecoder(tiny_t5, 16)
    objective = Objective(model, NoContrast(), "cross", 10.0, 0.1, 0, decoder, seed=0)
    batch = Batch(
        torch.randn(4, 3, 6), torch.ones(4, 3, dtype=torch.bool),
        torch.randn(4, 4, 5), torch.ones(4, 4, dtype=torch.bool),
        torch.tensor([[5, 6, 1, 0]] * 4), torch.tensor([[True, True, True, False]] * 4),
    )  # fmt: skip
    objective(batch)["loss"].backward()  # the captioning term only
    for head in (model.video_head, model.text_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert model.text_head.aggregation_token.grad.abs().sum() > 0  # only via the weights


def test_support_weights_for_several_captions_per_video():
    c_t, c_v = unit(6, seed=1), unit(3, seed=2)
    owners = torch.tensor([0, 0, 1, 1, 2, 2])
    cross = support_weights(c_t, c_v, "cross", 0.1, owners=owners)
    assert cross.shape == (6, 3)
    assert torch.all(cross[torch.arange(6), owners] == 0)
    torch.testing.assert_close(cross.sum(dim=1), torch.ones(6))
    identity = support_weights(c_t, c_v, "identity", 0.1, owners=owners)
    assert identity.argmax(dim=1).tolist() == owners.tolist()
