import pytest
import torch
import transformers
from torch.nn import functional

from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.model.support_attention import mix, support_weights
from supportset.train.config import TrainConfig
from supportset.train.objective import Batch, Objective, memory_width


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
    model = SupportSetModel(
        ModelConfig(dim=16, heads=2, ffn_dim=32, layers=1, dropout=0.0, text_encoder="frozen"), 6, 5
    )
    decoder = CaptionDecoder(tiny_t5, 16)
    objective = Objective(model, TrainConfig(caption_memory="head"), decoder)
    objective.contrast = NoContrast()
    batch = Batch(
        torch.randn(4, 3, 6), torch.ones(4, 3, dtype=torch.bool),
        torch.randn(4, 4, 5), torch.ones(4, 4, dtype=torch.bool),
        torch.tensor([[5, 6, 1, 0]] * 4), torch.tensor([[True, True, True, False]] * 4),
        torch.arange(4),
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


def test_cross_leaves_out_every_row_of_the_captions_own_video():
    groups = torch.tensor([0, 1, 0, 2, 1])  # rows 0 and 2, 1 and 4: two captions of a video
    same_video = groups[:, None] == groups[None, :]
    weights = support_weights(unit(5, seed=1), unit(5, seed=2), "cross", 0.1, same_video=same_video)
    assert torch.all(weights[same_video] == 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(5))


def objective_with(tiny_t5, captioning: str, memory: str) -> Objective:
    """A small model and decoder whose objective is the captioning term alone."""
    torch.manual_seed(0)
    model = SupportSetModel(
        ModelConfig(dim=16, heads=2, ffn_dim=32, layers=1, dropout=0.0, text_encoder="frozen"),
        6,
        5,
    )
    config = TrainConfig(captioning=captioning, caption_memory=memory)
    objective = Objective(model, config, CaptionDecoder(tiny_t5, memory_width(model, config)))
    objective.contrast = NoContrast()
    return objective


def random_batch() -> Batch:
    generator = torch.Generator().manual_seed(2)
    return Batch(
        torch.randn(4, 3, 6, generator=generator), torch.ones(4, 3, dtype=torch.bool),
        torch.randn(4, 4, 5, generator=generator), torch.ones(4, 4, dtype=torch.bool),
        torch.tensor([[5, 6, 1, 0]] * 4), torch.tensor([[True, True, True, False]] * 4),
        torch.arange(4),
    )  # fmt: skip


def video_head_gradients(objective: Objective, batch: Batch) -> tuple[list, list]:
    """d(caption loss)/d(video head parameters), and the part of it that flows through
    c_v alone (the support-set attention weights)."""
    model, captured = objective.model, []
    encode = model.encode_videos

    def capturing(*inputs):
        outputs = encode(*inputs)
        captured.append(outputs[0])
        return outputs

    model.encode_videos = capturing
    loss = objective(batch)["loss"]
    parameters = list(model.video_head.parameters())
    total = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    through_c_v = torch.autograd.grad(loss, captured[0], retain_graph=True)[0]
    chained = torch.autograd.grad(captured[0], parameters, through_c_v, allow_unused=True)
    zero = [torch.zeros_like(p) for p in parameters]
    return (
        [g if g is not None else z for g, z in zip(total, zero, strict=True)],
        [g if g is not None else z for g, z in zip(chained, zero, strict=True)],
    )


def test_identity_captioning_from_features_sends_no_gradient_to_the_video_head(tiny_t5):
    objective = objective_with(tiny_t5, "identity", "features")
    total, _ = video_head_gradients(objective, random_batch())
    assert all(torch.all(gradient == 0) for gradient in total)
    head = objective_with(tiny_t5, "identity", "head")  # today's path: the decoder reads it
    total, _ = video_head_gradients(head, random_batch())
    assert any(gradient.abs().sum() > 0 for gradient in total)


def test_cross_captioning_from_features_reaches_the_video_head_only_through_attention(tiny_t5):
    objective = objective_with(tiny_t5, "cross", "features")
    total, through_weights = video_head_gradients(objective, random_batch())
    assert any(gradient.abs().sum() > 0 for gradient in total)
    for gradient, expected in zip(total, through_weights, strict=True):
        torch.testing.assert_close(gradient, expected)
    head = objective_with(tiny_t5, "cross", "head")
    total, through_weights = video_head_gradients(head, random_batch())
    differences = [(g - e).abs().max() for g, e in zip(total, through_weights, strict=True)]
    assert max(differences) > 1e-4  # with the head's sequence there is a second path


def test_the_decoder_reads_the_features_width(tiny_t5):
    assert objective_with(tiny_t5, "cross", "features").decoder.projection.in_features == 6
    assert objective_with(tiny_t5, "cross", "head").decoder.projection.in_features == 16


def test_sentence_mean_is_the_token_mean_times_tokens_per_caption(tiny_t5):
    batch = random_batch()  # 3 tokens in each of 4 captions
    token_mean = objective_with(tiny_t5, "identity", "features")(batch)["caption"]
    objective = objective_with(tiny_t5, "identity", "features")
    objective.config = TrainConfig(captioning="identity", caption_reduction="sentence_mean")
    torch.testing.assert_close(objective(batch)["caption"], 3 * token_mean)
