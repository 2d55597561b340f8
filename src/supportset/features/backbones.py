"""The visual backbones: torchvision ResNets (appearance) and R(2+1)D VideoResNets (motion).

R(2+1)D-34 follows the IG65M release (Ghadiyaram et al. 2019, converted from Caffe2 by the
ig65m-pytorch project): torchvision's VideoResNet with (2+1)D blocks, layers 3-4-6-3, the
Caffe2 mid-plane counts in the first block of layers 2-4 (288, 576, 1152) and BatchNorm
eps 1e-3, so that its published state dicts load strictly.

`appearance_map` and `motion_map` give each network's last feature map before its global
pooling (`pool_map`), for the crop features of `features.crops` (`pool_windows`).

Weights come from a local file or the torch hub cache, or are explicitly random (demo and
tests). Nothing is downloaded at run time: missing weights raise WeightsError saying how
to provide them, before any video is touched.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Normalisation of the Kinetics / IG65M R(2+1)D releases (RGB, values in [0, 1]).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

R2PLUS1D_LAYERS = {
    "r2plus1d_10": [1, 1, 1, 1],
    "r2plus1d_18": [2, 2, 2, 2],
    "r2plus1d_34": [3, 4, 6, 3],
}
APPEARANCE_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
}
MOTION_DIM = 512
CAFFE2_MIDPLANES = {"layer2": 288, "layer3": 576, "layer4": 1152}

IG65M_RELEASE = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"
# weights name -> (file name in the torch hub cache, frames per clip it was trained on)
IG65M_WEIGHTS = {
    "ig65m_clip32": ("r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth", 32),
    "ig65m_clip8": ("r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth", 8),
    "kinetics_clip32": ("r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth", 32),
    "kinetics_clip8": ("r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth", 8),
}
RANDOM = "random"
RANDOM_SEED = 0


class WeightsError(RuntimeError):
    """Named weights that are not available offline; the message says how to provide them."""


def build_appearance(arch: str, weights: str) -> nn.Module:
    """ResNet whose output is the globally average-pooled last stage, (N, 3, H, W) -> (N, C).

    C is APPEARANCE_DIMS[arch]: 2048 for resnet50/101/152 (pool5), 512 for resnet18/34.
    """
    path = resolve_weights(arch, weights, "features.appearance.weights")
    torch.manual_seed(RANDOM_SEED)
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = nn.Identity()
    if path is not None:
        model.load_state_dict(_without_classifier(_load_state_dict(path)))
    return model.eval()


def build_motion(arch: str, weights: str) -> nn.Module:
    """R(2+1)D VideoResNet, (N, 3, T, H, W) -> (N, 512) after global spatio-temporal pooling."""
    path = resolve_weights(arch, weights, "features.motion.weights")
    torch.manual_seed(RANDOM_SEED)
    model = VideoResNet(
        block=BasicBlock,
        conv_makers=[Conv2Plus1D] * 4,
        layers=R2PLUS1D_LAYERS[arch],
        stem=R2Plus1dStem,
    )
    if arch == "r2plus1d_34":
        _use_caffe2_layout(model)
    model.fc = nn.Identity()
    if path is not None:
        model.load_state_dict(_without_classifier(_load_state_dict(path)))
    return model.eval()


def appearance_map(model: ResNet, images: torch.Tensor) -> torch.Tensor:
    """The ResNet's last stage before global pooling: (N, 3, H, W) -> (N, C, h, w), the
    layers of torchvision's forward up to `layer4` (h, w = H, W / 32, rounded up)."""
    stem = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    return model.layer4(model.layer3(model.layer2(model.layer1(stem))))


def motion_map(model: VideoResNet, clips: torch.Tensor) -> torch.Tensor:
    """The R(2+1)D's last stage before global pooling: (N, 3, T, H, W) -> (N, 512, t, h,
    w), the layers of torchvision's forward up to `layer4` (t = T / 8, h, w = H, W / 16)."""
    stem = model.stem(clips)
    return model.layer4(model.layer3(model.layer2(model.layer1(stem))))


def pool_map(model: ResNet | VideoResNet, feature_map: torch.Tensor) -> torch.Tensor:
    """The network's output from its last map, (N, C, ...) -> (N, C): its own global
    average pool, flatten and (identity) fc, so that `pool_map(model, appearance_map(model,
    x))` is bit-identical to `model(x)` (and likewise for `motion_map`)."""
    return model.fc(torch.flatten(model.avgpool(feature_map), 1))


def pool_windows(feature_map: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Float32 average of each window of a map: map (N, C, h, w), cells (N, K, 4) int64
    [top, left, bottom, right) in grid cells -> (N, K, C)."""
    rows = torch.arange(feature_map.shape[2], device=feature_map.device)
    columns = torch.arange(feature_map.shape[3], device=feature_map.device)
    cells = cells.to(feature_map.device)
    in_rows = (rows >= cells[..., 0:1]) & (rows < cells[..., 2:3])  # (N, K, h)
    in_columns = (columns >= cells[..., 1:2]) & (columns < cells[..., 3:4])  # (N, K, w)
    weights = (in_rows[..., :, None] & in_columns[..., None, :]).float()  # (N, K, h, w)
    weights = weights / weights.sum(dim=(2, 3), keepdim=True)
    return torch.einsum("nchw,nkhw->nkc", feature_map.float(), weights)


def resolve_weights(arch: str, weights: str, key: str) -> Path | None:
    """The weights file for `weights` (None for 'random'); WeightsError when unavailable.

    Accepted: 'random'; a path to a state-dict file; a torchvision weights name
    (e.g. IMAGENET1K_V1 for ResNets, KINETICS400_V1 for r2plus1d_18) or an IG65M name
    (ig65m_clip32, ig65m_clip8, kinetics_clip32, kinetics_clip8 for r2plus1d_34), both
    looked up in the torch hub cache ($TORCH_HOME/hub/checkpoints).
    """
    if weights == RANDOM:
        return None
    if not weights:
        raise WeightsError(
            f"{key} is empty: name the weights (see README, 'Pre-trained weights'), give a "
            "state-dict file, or write 'random' for an explicitly untrained network (demo and "
            "tests only)."
        )
    if Path(weights).is_file():
        return Path(weights)
    if Path(weights).suffix or "/" in weights:
        raise WeightsError(f"{key}: no weights file at {weights}")
    if weights in IG65M_WEIGHTS:
        if arch != "r2plus1d_34":
            raise WeightsError(f"{key}: {weights} are weights of r2plus1d_34, not {arch}")
        file_name, _ = IG65M_WEIGHTS[weights]
        return _cached(file_name, IG65M_RELEASE + file_name, key)
    return _cached_torchvision(arch, weights, key)


def check_clip_len(weights: str, clip_len: int) -> None:
    """Refuse a clip length other than the one the named IG65M weights were trained on."""
    if weights in IG65M_WEIGHTS and IG65M_WEIGHTS[weights][1] != clip_len:
        trained = IG65M_WEIGHTS[weights][1]
        raise WeightsError(
            f"features.motion.clip_len is {clip_len} but {weights} was trained on "
            f"{trained}-frame clips"
        )


def _use_caffe2_layout(model: VideoResNet) -> None:
    for layer, midplanes in CAFFE2_MIDPLANES.items():
        block = getattr(model, layer)[0]
        planes = block.conv2[0][0].in_channels
        block.conv2[0] = Conv2Plus1D(planes, planes, midplanes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.eps = 1e-3


def _cached_torchvision(arch: str, weights: str, key: str) -> Path:
    enum = torchvision.models.get_model_weights(arch)
    try:
        url = enum[weights].url
    except KeyError as error:
        known = ", ".join(member.name for member in enum)
        raise WeightsError(f"{key}: '{weights}' is not a {arch} weights name ({known})") from error
    return _cached(Path(url).name, url, key)


def _cached(file_name: str, url: str, key: str) -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not path.is_file():
        raise WeightsError(
            f"{key}: {file_name} is not in the torch hub cache ({path.parent}). On a machine "
            f'with internet run: python -c "import torch; torch.hub.load_state_dict_from_url('
            f"'{url}')\" (set TORCH_HOME to share the cache with this machine), or download "
            f"the file and set {key} to its path."
        )
    return path


def _without_classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state.items() if not key.startswith("fc.")}


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state
