import math

import pytest
import torch

from supportset.losses import HardNegativeTripletLoss, InfoNCELoss, MILNCELoss
from supportset.model.pooling import MaskedBatchNorm1d
from supportset.model.retrieval_model import ModelConfig, SupportSetModel

SMALL = ModelConfig(dim=16, heads=2, ffn_dim=32, layers=2, dropout=0.0, text_encoder="frozen")


def test_triplet_loss_matches_hand_computation():
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    # s(t_i, v_j): [[0.8, 0.6], [0.6, 0.8]]; positives 0.8; every hinge is 0.2 - 0.8 + 0.6 = 0
    assert HardNegativeTripletLoss(0.2)(video, text).item() == pytest.approx(0.0, abs=1e-7)
    # with margin 0.5 each of the 4 hinges is 0.3: (0.3 + 0.3) per pair, mean 0.6
    assert HardNegativeTripletLoss(0.5)(video, text).item() == pytest.approx(0.6)


def test_triplet_loss_uses_the_hardest_negative():
    video = torch.eye(3)
    text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.9, 0.1]])
    # caption 2: positive 0.1, hardest wrong video 1 scores 0.9 -> 0.2 - 0.1 + 0.9 = 1.0
    # video 1: positive caption 1 scores 1.0, hardest wrong caption 2 -> 0.2 - 1 + 0.9 = 0.1
    # video 2: positive 0.1, wrong captions score 0 -> 0.1; caption 1 & 0: 0 ... total / 3
    expected = (1.0 + 0.1 + 0.1) / 3
    assert HardNegativeTripletLoss(0.2)(video, text).item() == pytest.approx(expected)


def test_masked_batchnorm_ignores_padding():
    norm = MaskedBatchNorm1d(3)
    x = torch.randn(2, 4, 3)
    valid = torch.tensor([[True, True, False, False], [True, True, True, True]])
    padded = x.clone()
    padded[0, 2:] = 1000.0
    out_a, out_b = norm(x, valid), norm(padded, valid)
    torch.testing.assert_close(out_a[valid], out_b[valid])
    assert torch.all(out_b[~valid] == 0)


@pytest.mark.parametrize(
    ("pooling", "pre_encoders"),
    [("transformer", ("mlp", "gru")), ("mean", ("mlp", "gru")), ("max", ("mlp", "gru")),
     ("transformer", ("cnn", "cnn")), ("transformer", ("mlp+cnn", "gru+cnn"))],
)  # fmt: skip
def test_padding_does_not_change_embeddings(pooling, pre_encoders):
    torch.manual_seed(0)
    config = ModelConfig(
        **{**SMALL.__dict__, "pooling": pooling, "video_pre_encoder": pre_encoders[0],
           "text_pre_encoder": pre_encoders[1]}
    )  # fmt: skip
    model = SupportSetModel(config, 8, 6).eval()
    short = torch.randn(1, 3, 8)
    padded = torch.cat([short, torch.randn(1, 4, 8)], dim=1)
    valid_short = torch.ones(1, 3, dtype=torch.bool)
    valid_padded = torch.tensor([[True] * 3 + [False] * 4])
    torch.testing.assert_close(
        model.embed_videos(short, valid_short), model.embed_videos(padded, valid_padded)
    )
    torch.testing.assert_close(
        model.embed_texts(short[..., :6], valid_short),
        model.embed_texts(padded[..., :6], valid_padded),
    )


def test_outputs_are_unit_vectors_and_gradients_reach_both_heads():
    torch.manual_seed(0)
    model = SupportSetModel(SMALL, 8, 6)
    video_emb, text_emb = model(
        torch.randn(4, 5, 8),
        torch.ones(4, 5, dtype=torch.bool),
        torch.randn(4, 7, 6),
        torch.ones(4, 7, dtype=torch.bool),
    )
    assert video_emb.shape == (4, 16)
    torch.testing.assert_close(video_emb.norm(dim=1), torch.ones(4))
    HardNegativeTripletLoss(0.2)(video_emb, text_emb).backward()
    for head in (model.video_head, model.text_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_sum_of_hinges_and_intra_modal_negatives():
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    # margin 0.5: every inter-modal hinge is 0.5 - 0.8 + 0.6 = 0.3, one negative each
    assert HardNegativeTripletLoss(0.5, "sum")(video, text).item() == pytest.approx(0.6)
    # intra: s(t_0, t_1) = 0.96 -> 0.5 - 0.8 + 0.96 = 0.66; s(v_0, v_1) = 0 -> 0 (clamped 0.5-0.8)
    intra = HardNegativeTripletLoss(0.5, "hardest", intra_modal=True)(video, text).item()
    assert intra == pytest.approx(0.6 + 0.66)


def test_infonce_matches_hand_computation():
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    # each row is [0.8, 0.6] / 0.1 up to order: -log(e^8 / (e^8 + e^6)) in both directions
    expected = -torch.log(
        torch.tensor(8.0).exp() / (torch.tensor(8.0).exp() + torch.tensor(6.0).exp())
    )
    assert InfoNCELoss(0.1)(video, text).item() == pytest.approx(expected.item(), rel=1e-5)


def test_cnn_pre_encoder_sees_neighbouring_steps_only():
    from supportset.model.pooling import CNNPreEncoder

    torch.manual_seed(0)
    encoder = CNNPreEncoder(3, 8, 0.0).eval()
    x = torch.zeros(1, 12, 3)
    valid = torch.ones(1, 12, dtype=torch.bool)
    base = encoder(x, valid)
    x[0, 6] = 1.0
    changed = (encoder(x, valid) - base).abs().sum(dim=2)[0] > 0
    # output t reads inputs t-2 .. t+3 (kernel 6), so the step at 6 reaches outputs 3 .. 8
    assert changed[3:9].all() and not changed[:3].any() and not changed[9:].any()


def test_masked_batchnorm_equals_torch_batchnorm_on_valid_positions():
    torch.manual_seed(0)
    ours, reference = MaskedBatchNorm1d(3), torch.nn.BatchNorm1d(3)
    x = torch.randn(2, 5, 3) * 3 + 1
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    torch.testing.assert_close(ours(x, valid)[valid], reference(x[valid]))
    torch.testing.assert_close(ours.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.running_var, reference.running_var)
    ours.eval(), reference.eval()
    torch.testing.assert_close(ours(x, valid)[valid], reference(x[valid]))


def test_milnce_matches_hand_computation_and_reduces_to_symmetric_nce():
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.6, 0.8]])
    same_video = torch.tensor([[True, False], [True, False], [False, True]])  # t0, t1 show v0
    scores = video @ text.T / 0.5  # (2, 3)
    e = scores.exp()
    # video 0: positives t0, t1; negatives t2 with v0, and v1 with t0 and t1
    positives = e[0, 0] + e[0, 1]
    expected0 = -torch.log(positives / (positives + e[0, 2] + e[1, 0] + e[1, 1]))
    # video 1: positive t2; negatives t0, t1 with v1, and v0 with t2
    expected1 = -torch.log(e[1, 2] / (e[1, 2] + e[1, 0] + e[1, 1] + e[0, 2]))
    loss = MILNCELoss(0.5)(video, text, same_video)
    assert loss.item() == pytest.approx(((expected0 + expected1) / 2).item(), rel=1e-5)


def test_pair_losses_refuse_several_captions_per_video():
    video, text = torch.eye(2), torch.eye(3)[:, :2]
    with pytest.raises(ValueError, match="one caption per video"):
        HardNegativeTripletLoss()(video, text)


def _two_captions_of_one_video() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four pairs; rows 0 and 2 are two captions of one video (each with its own row of
    that video). Returns video (4, 8), text (4, 8) unit vectors and same_video (4, 4)."""
    generator = torch.Generator().manual_seed(3)
    video = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)
    groups = torch.tensor([0, 1, 0, 2])
    return video, text, groups[:, None] == groups[None, :]


def test_two_captions_of_one_video_are_not_triplet_negatives():
    video, text, same_video = _two_captions_of_one_video()
    scores = (text @ video.T).tolist()
    text_text, video_video = (text @ text.T).tolist(), (video @ video.T).tolist()
    expected = 0.0
    for i in range(4):
        others = [j for j in range(4) if not same_video[i, j]]
        for table in (scores, (text @ video.T).T.tolist(), text_text, video_video):
            expected += max(max(0.2 - scores[i][i] + table[i][j], 0.0) for j in others)
    loss = HardNegativeTripletLoss(0.2, intra_modal=True, reduction="sum")
    assert loss(video, text, same_video).item() == pytest.approx(expected, rel=1e-5)
    assert loss(video, text).item() != pytest.approx(expected, rel=1e-3)  # the mask matters


def test_two_captions_of_one_video_are_not_infonce_negatives():
    video, text, same_video = _two_captions_of_one_video()
    scores = (text @ video.T / 0.1).tolist()
    expected = 0.0
    for i in range(4):
        kept = [j for j in range(4) if j == i or not same_video[i, j]]
        for row in (scores[i], [scores[j][i] for j in range(4)]):
            denominator = sum(math.exp(row[j]) for j in kept)
            expected += 0.5 * -math.log(math.exp(row[i]) / denominator)
    loss = InfoNCELoss(0.1, reduction="sum")
    assert loss(video, text, same_video).item() == pytest.approx(expected, rel=1e-5)
    assert loss(video, text).item() != pytest.approx(expected, rel=1e-3)


def test_sum_reduction_is_the_batch_size_times_the_mean():
    video, text, same_video = _two_captions_of_one_video()
    for kind in (HardNegativeTripletLoss, InfoNCELoss, MILNCELoss):
        total = kind(reduction="sum")(video, text, same_video)
        torch.testing.assert_close(total, 4 * kind(reduction="mean")(video, text, same_video))
