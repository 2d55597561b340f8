"""Caption generation with the trained decoder, its scores by the COCO caption tools, and
the captioning table."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

from supportset.captioning.generate import CaptionConfig, Captioner
from supportset.captioning.scores import JavaMissingError, caption_scores
from supportset.captioning.table import write_caption_table
from supportset.features.bank import pad_batch
from supportset.model.checkpoint import model_from_checkpoint, read_checkpoint
from supportset.model.decoder import decoder_from_record
from supportset.train.config import TrainConfig
from tests.test_train import MODEL, TRAINING, save_tiny_t5, synthetic_bank
from tests.train_runs import train

EOS = 1
# identity captioning: each video's caption ([3 + class] * n, EOS) from its own features
CAPTIONING = TrainConfig(**{**TRAINING.__dict__, "epochs": 16, "captioning": "identity"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, object, object]:
    folder = tmp_path_factory.mktemp("captioning")
    t5 = save_tiny_t5(folder / "t5")
    bank, train_split, val_split = synthetic_bank()
    train(bank, train_split, val_split, MODEL, CAPTIONING, folder / "m.pt", folder / "l.csv", t5)
    return folder / "m.pt", bank, val_split


def captioner(model_path: Path) -> Captioner:
    checkpoint = read_checkpoint(model_path, "model file")
    decoder, t5 = decoder_from_record(checkpoint["decoder"])
    model = model_from_checkpoint(checkpoint, torch.device("cpu"))
    memory = checkpoint["decoder"]["memory"]
    return Captioner(model, decoder, t5, memory, None, torch.device("cpu"))


def videos_of(bank, split, count: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_batch([bank.videos[v] for v in split.video_ids[:count]], 6)


def brute_force_greedy(captioner: Captioner, features, valid, max_tokens: int) -> list[list[int]]:
    """Greedy decoding written out with the training forward pass: at each step the token
    of highest log-likelihood given the tokens so far (teacher forcing of the prefix)."""
    memory, memory_valid = captioner.memory_of(features, valid)
    captions = []
    for row in range(len(features)):
        tokens: list[int] = []
        while len(tokens) < max_tokens and (not tokens or tokens[-1] != EOS):
            best, best_nll = None, None
            for candidate in range(captioner.decoder.config.vocab_size):
                ids = torch.tensor([[*tokens, candidate]])
                nll, _ = captioner.decoder(
                    memory[row : row + 1], memory_valid[row : row + 1], ids, ids >= 0
                )
                prefix = torch.tensor([tokens]) if tokens else None
                prefix_nll = (
                    captioner.decoder(
                        memory[row : row + 1], memory_valid[row : row + 1], prefix, prefix >= 0
                    )[0]
                    if prefix is not None
                    else 0.0
                )
                step_nll = float(nll - prefix_nll)
                if best_nll is None or step_nll < best_nll - 1e-6:
                    best, best_nll = candidate, step_nll
            tokens.append(best)
        captions.append(tokens)
    return captions


def generated_tokens(ids: torch.Tensor) -> list[list[int]]:
    """Generated ids without the start token, cut after EOS (padding dropped)."""
    captions = []
    for row in ids.tolist():
        tokens = row[1:]
        captions.append(tokens[: tokens.index(EOS) + 1] if EOS in tokens else tokens)
    return captions


def test_model_pt_keeps_the_decoder_it_was_trained_with(trained):
    model_path, *_ = trained
    record = read_checkpoint(model_path, "model file")["decoder"]
    assert record["memory"] == "features" and record["memory_dim"] == 12
    assert "projection.weight" in record["state"] and "lm_head.weight" in record["state"]


def test_greedy_generation_is_the_token_by_token_argmax(trained):
    model_path, bank, val_split = trained
    model = captioner(model_path)
    features, valid = videos_of(bank, val_split, 4)
    greedy = CaptionConfig(beam_size=1)
    ids = model.token_ids(features, valid, greedy, max_tokens=6)
    with torch.inference_mode():
        assert generated_tokens(ids) == brute_force_greedy(model, features, valid, 6)


def test_a_trained_decoder_names_each_video_s_class(trained):
    """Captions of class c are [3 + c] * n, EOS: identity captioning learns to say it."""
    model_path, bank, val_split = trained
    features, valid = videos_of(bank, val_split)
    ids = captioner(model_path).token_ids(features, valid, CaptionConfig(beam_size=3), 6)
    first_tokens = [tokens[0] for tokens in generated_tokens(ids)]
    classes = [3 + int(video_id[1:]) % 8 for video_id in val_split.video_ids[:12]]
    assert sum(a == b for a, b in zip(first_tokens, classes, strict=True)) >= 10


def test_beam_search_is_deterministic_and_beam_one_is_greedy(trained):
    model_path, bank, val_split = trained
    model = captioner(model_path)
    features, valid = videos_of(bank, val_split)
    beams = CaptionConfig(beam_size=4)
    first = model.token_ids(features, valid, beams, 6)
    assert torch.equal(first, model.token_ids(features, valid, beams, 6))
    one_beam = model.token_ids(features, valid, CaptionConfig(beam_size=1), 6)
    with torch.inference_mode():
        greedy = brute_force_greedy(model, features[:2], valid[:2], 6)
    assert generated_tokens(one_beam)[:2] == greedy


def test_a_model_trained_without_captioning_has_no_decoder_to_generate_with(tmp_path, capsys):
    bank, train_split, val_split = synthetic_bank()
    config = TrainConfig(**{**TRAINING.__dict__, "epochs": 1})
    train(bank, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")
    from supportset.captioning.generate import load_captioner

    checkpoint = read_checkpoint(tmp_path / "m.pt", "model file")
    with pytest.raises(ValueError, match="trained without captioning"):
        load_captioner(checkpoint, tmp_path / "m.pt", "unused", torch.device("cpu"))
    del checkpoint["decoder"]
    with pytest.raises(ValueError, match=r"before model\.pt kept the caption decoder"):
        load_captioner(checkpoint, tmp_path / "m.pt", "unused", torch.device("cpu"))


# The coco-caption scorers' documented values on two sentences with two references each:
# Maluuba/nlg-eval's unit test of them (nlgeval/tests/test_nlgeval.py, examples/hyp.txt,
# ref1.txt, ref2.txt): Bleu_4 0.201143, METEOR 0.295797, ROUGE_L 0.522104, CIDEr 1.242192.
HYPOTHESES = {
    "a": "this is the model generated sentence1 which seems good enough",
    "b": "this is sentence2 which has been generated by your model",
}
REFERENCES = {
    "a": [
        "this is one reference sentence for sentence1",
        "this is one more reference sentence for sentence1",
    ],
    "b": [
        "this is a reference sentence for sentence2 which was generated by your model",
        "this is the second reference sentence for sentence2",
    ],
}
DOCUMENTED = {"BLEU-4": 20.1143, "METEOR": 29.5797, "ROUGE-L": 52.2104, "CIDEr": 124.2192}


def test_scores_equal_the_documented_values_of_the_coco_caption_tools():
    scores = caption_scores(HYPOTHESES, REFERENCES)
    assert scores == pytest.approx(DOCUMENTED, abs=1e-4)


def test_scoring_without_java_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaMissingError, match="apt-get install default-jre-headless"):
        caption_scores(HYPOTHESES, REFERENCES)


def test_the_caption_table_has_the_paper_s_rows_then_this_run_s(tmp_path):
    metrics = tmp_path / "caption_metrics_test.json"
    metrics.write_text('{"BLEU-4": 1.234, "METEOR": 5.0, "ROUGE-L": 17.06, "CIDEr": 3.14}')
    out = tmp_path / "activitynet_captioning.csv"
    write_caption_table(out, [("Support-set (demo)", metrics)], "activitynet_table9")
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["row", "source", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    assert rows[-2] == {
        "row": "Ours, HT100M + ActivityNet", "source": "paper",
        "BLEU-4": "1.4", "METEOR": "6.9", "ROUGE-L": "17.5", "CIDEr": "3.1",
    }  # fmt: skip
    assert rows[0]["ROUGE-L"] == "" and rows[0]["source"] == "paper"
    assert rows[-1] == {
        "row": "Support-set (demo)", "source": "this run",
        "BLEU-4": "1.2", "METEOR": "5.0", "ROUGE-L": "17.1", "CIDEr": "3.1",
    }  # fmt: skip
    assert "video-paragraph" in out.with_suffix(".md").read_text()
    assert os.path.exists(out.with_suffix(".md"))


def test_fine_tuning_starts_the_decoder_from_the_one_init_from_kept(trained, tmp_path):
    """With a vanishing learning rate the fine-tuned decoder stays the pre-trained one;
    from a model without a decoder it stays the T5's."""
    model_path, bank, val_split = trained
    _, train_split, _ = synthetic_bank()
    t5 = model_path.parent / "t5"
    still = {"epochs": 1, "lr": 1e-12, "init_from": str(model_path)}
    config = TrainConfig(**{**CAPTIONING.__dict__, **still})
    train(bank, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv", t5)
    kept = read_checkpoint(model_path, "model file")["decoder"]["state"]
    tuned = read_checkpoint(tmp_path / "m.pt", "model file")["decoder"]["state"]
    for name, value in kept.items():
        torch.testing.assert_close(tuned[name], value, atol=1e-6, rtol=0)
    plain = TrainConfig(**{**TRAINING.__dict__, "epochs": 1})
    train(bank, train_split, val_split, MODEL, plain, tmp_path / "p.pt", tmp_path / "p.csv")
    config = TrainConfig(**{**config.__dict__, "init_from": str(tmp_path / "p.pt")})
    train(bank, train_split, val_split, MODEL, config, tmp_path / "f.pt", tmp_path / "f.csv", t5)
    from_t5 = read_checkpoint(tmp_path / "f.pt", "model file")["decoder"]["state"]
    import transformers

    original = transformers.T5ForConditionalGeneration.from_pretrained(t5).lm_head.weight
    torch.testing.assert_close(from_t5["lm_head.weight"], original, atol=1e-6, rtol=0)
