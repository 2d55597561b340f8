import re

import pytest
import torch

from supportset.model.pooling import (
    ChainedPreEncoder,
    CNNPreEncoder,
    GRUPreEncoder,
    MLPPreEncoder,
    pre_encoder,
)
from supportset.model.retrieval_model import ModelConfig, SupportSetModel

IN_DIM, DIM = 6, 8
VALID = torch.tensor([[True] * 5 + [False] * 2, [True] * 7, [True] * 2 + [False] * 5])
CHAINS = [
    ("model.video_pre_encoder", "mlp+cnn", MLPPreEncoder),
    ("model.text_pre_encoder", "gru+cnn", GRUPreEncoder),
]


def build(setting: str, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return pre_encoder(setting, name, IN_DIM, DIM, 0.0).eval()


@pytest.mark.parametrize(("setting", "name", "first"), CHAINS)
def test_chain_is_first_stage_then_cnn(setting, name, first):
    encoder = build(setting, name)
    assert isinstance(encoder, ChainedPreEncoder)
    head, cnn = encoder.stages
    assert type(head) is first and type(cnn) is CNNPreEncoder
    assert cnn.convs[0].in_channels == DIM
    x = torch.randn(3, 7, IN_DIM)
    out = encoder(x, VALID)
    assert out.shape == (3, 7, DIM)
    torch.testing.assert_close(out, cnn(head(x, VALID), VALID))
    assert torch.all(out[~VALID] == 0) and out[VALID].abs().sum() > 0


@pytest.mark.parametrize(("setting", "name", "first"), CHAINS)
def test_chain_ignores_padded_inputs(setting, name, first):
    encoder = build(setting, name)
    x = torch.randn(3, 7, IN_DIM)
    noisy = x.clone()
    noisy[~VALID] = 100.0 * torch.randn(int((~VALID).sum()), IN_DIM)
    torch.testing.assert_close(encoder(x, VALID)[VALID], encoder(noisy, VALID)[VALID])


@pytest.mark.parametrize(
    ("setting", "name", "cls", "keys"),
    [
        ("model.video_pre_encoder", "mlp", MLPPreEncoder, {"net.1.weight", "net.1.bias"}),
        ("model.video_pre_encoder", "cnn", CNNPreEncoder, {"convs.0.weight", "convs.3.bias"}),
        ("model.text_pre_encoder", "gru", GRUPreEncoder, {"gru.weight_ih_l0_reverse"}),
        ("model.text_pre_encoder", "cnn", CNNPreEncoder, {"convs.2.weight"}),
    ],
)
def test_single_names_keep_their_module_and_state_dict_keys(setting, name, cls, keys):
    encoder = build(setting, name)
    assert type(encoder) is cls
    assert set(encoder.state_dict()) == set(cls(IN_DIM, DIM, 0.0).state_dict())
    assert keys <= set(encoder.state_dict())


@pytest.mark.parametrize(
    ("setting", "name"),
    [
        ("model.video_pre_encoder", "gru"),
        ("model.video_pre_encoder", "cnn+mlp"),
        ("model.text_pre_encoder", "mlp+cnn"),
        ("model.text_pre_encoder", "lstm"),
    ],
)
def test_unknown_name_raises_naming_the_setting(setting, name):
    with pytest.raises(ValueError, match=re.escape(setting) + ".*" + re.escape(f"'{name}'")):
        pre_encoder(setting, name, IN_DIM, DIM, 0.0)


def test_model_with_default_chained_pre_encoders_embeds_varying_lengths():
    config = ModelConfig(dim=16, heads=2, ffn_dim=32, layers=1, dropout=0.0, text_encoder="frozen")
    assert (config.video_pre_encoder, config.text_pre_encoder) == ("mlp+cnn", "gru+cnn")
    torch.manual_seed(0)
    model = SupportSetModel(config, IN_DIM, 5).eval()
    assert isinstance(model.video_head.pre_encoder, ChainedPreEncoder)
    assert isinstance(model.text_head.pre_encoder, ChainedPreEncoder)
    videos, texts = model(torch.randn(3, 7, IN_DIM), VALID, torch.randn(3, 7, 5), VALID)
    assert videos.shape == texts.shape == (3, 16)
    torch.testing.assert_close(videos.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(texts.norm(dim=1), torch.ones(3))
