"""The `training` settings: the paper's hyper-parameters (appendix 6.1-6.2) by default.

Where the paper leaves a choice open, the setting offers the readings and the README's
deviation list quotes the paper ("Where we deviate from the paper").
"""

from __future__ import annotations

from dataclasses import dataclass, field

EPOCH_UNITS = ("pairs", "videos")
SELECTIONS = ("val", "last")
CONTRAST_REDUCTIONS = ("sum", "mean")
CAPTION_REDUCTIONS = ("token_mean", "sentence_mean")
CAPTION_MEMORIES = ("features", "head")
FINE_TUNING_EPOCH_FRACTION = 4  # 6.2: "For fine-tuning HowTo100M pre-trained model, we
# reduce training epochs into quarters"


@dataclass
class TrainConfig:
    batch_size: int = 64  # video-caption pairs per step (6.2: "batch-size is set to 64")
    lr: float = 5e-5  # Adam learning rate (6.2: "initial learning rate 5e-5")
    grad_clip: float = 0.2  # global gradient norm clipping (6.2: "clip gradients greater than 0.2")
    epochs: int = 20  # passes over the training data (6.2: MSR-VTT 20 epochs)
    # pairs: every (video, caption) pair once per epoch, as 6.1 counts them ("180K
    # video-text pairs for 20 epochs"); videos: each video once with one random caption
    epoch_unit: str = "pairs"
    train_splits: list[str] = field(default_factory=lambda: ["train"])  # splits trained on
    selection: str = "val"  # val: keep the epoch best on val; last: keep the last epoch
    loss: str = "triplet"  # contrastive loss: triplet | infonce (Table 2e) | milnce
    # sum: the triplet loss summed over the batch, as Faghri et al.'s (VSE++) code, which
    # is what makes lambda = 10 give "similar magnitudes" (3.1.2); mean: eq. 1's 1/B
    contrast_reduction: str = "sum"
    captions_per_video: int = 1  # captions of each video in a batch (>1: MIL-NCE positives)
    margin: float = 0.2  # triplet margin alpha (3.1.1: "we set alpha = 0.2")
    negatives: str = "hardest"  # triplet over the hardest negative, or the sum of all
    intra_modal: bool = False  # add same-modality negatives (Table 2e, inter+intra)
    nce_temperature: float = 0.05  # InfoNCE temperature
    max_video_seconds: int = 32  # seconds of each video kept (its first ones)
    clips: bool = False  # train on each caption's segment of its video (captions with times)
    seed: int = 0  # initialisation, order and caption sampling
    captioning: str = "cross"  # none | identity | full | hybrid | cross (support set)
    caption_weight: float = 10.0  # lambda (3.1.2: "We set lambda = 10")
    # token_mean: T5's loss, the NLL averaged over the batch's tokens; sentence_mean: eq. 2
    # as printed, each caption's summed NLL averaged over the batch
    caption_reduction: str = "token_mean"
    # features: e_v = Psi'(v), the frozen per-second features (3.2); head: the video
    # head's contextualised sequence (a direct path from the decoder into the video head)
    caption_memory: str = "features"
    # the T5 (HF cache name or local folder) whose decoder captions; "" = the text model
    # (6.1: "For the text decoder, we use the T5-base model decoder, also pre-trained on
    # C4", the text encoder being T5-base too); Table 2d compares T5-small and T5-base
    decoder: str = ""
    temperature: float = 0.1  # T of the support-set softmax (6.2: "T is set to 0.1")
    support_set_size: int = 0  # members of each support set; 0 = the whole batch
    init_from: str = ""  # model.pt to start from (e.g. HowTo100M pre-training); "" = scratch
    # StiCA's feature crops (features.crops; not used by the paper, hence off): each step
    # reads, per video and second, one of its K crop features drawn at random instead of the
    # full-frame feature
    crop_augment: bool = False
    # weight of the within-video term: InfoNCE between two crop views of each video (drawn
    # independently) through the video head, over the batch; 0 = off
    crop_contrast_weight: float = 0.0
    crop_temperature: float = 0.1  # temperature of that InfoNCE

    def __post_init__(self) -> None:
        choices = {
            "epoch_unit": EPOCH_UNITS,
            "selection": SELECTIONS,
            "contrast_reduction": CONTRAST_REDUCTIONS,
            "caption_reduction": CAPTION_REDUCTIONS,
            "caption_memory": CAPTION_MEMORIES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"training.{name} '{getattr(self, name)}' is not one of {', '.join(allowed)}"
                )
        if self.captions_per_video > 1 and self.loss != "milnce":
            raise ValueError("training.captions_per_video above 1 needs training.loss milnce")
        if self.captions_per_video > 1 and self.epoch_unit == "pairs":
            raise ValueError(
                "training.captions_per_video above 1 draws bags of captions per video: it "
                "needs training.epoch_unit videos"
            )
        if self.crop_contrast_weight < 0:
            raise ValueError(
                f"training.crop_contrast_weight must be 0 or more, not {self.crop_contrast_weight}"
            )
        if self.crop_temperature <= 0:
            raise ValueError(
                f"training.crop_temperature must be above 0, not {self.crop_temperature}"
            )
        if self.epochs < 1:
            raise ValueError(f"training.epochs must be at least 1, not {self.epochs}")
        if "test" in self.train_splits:
            raise ValueError("training.train_splits must not include test: it is never trained on")
        if self.selection == "val" and "val" in self.train_splits:
            raise ValueError(
                "training.selection 'val' picks the epoch on the val split, which "
                "training.train_splits trains on; use selection 'last'"
            )

    @property
    def reads_crops(self) -> bool:
        """Whether training reads the crop features (features.crops) of the visual shards."""
        return self.crop_augment or self.crop_contrast_weight > 0
