"""The visual backbones: torchvision ResNets (appearance) and R(2+1)D VideoResNets (motion).

Weights come from a local file or the torch hub cache, or are explicitly random (demo and
tests). Nothing is downloaded at run time: missing weights raise WeightsError saying how to
provide them, before any video is touched.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
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
RANDOM = "random"
RANDOM_SEED = 0


class WeightsError(RuntimeError):
    """Named weights that are not available offline; the message says how to provide them."""


def build_appearance(arch: str, weights: str) -> nn.Module:
    """ResNet whose output is the globally average-pooled last stage, (N, 3, H, W) -> (N, C).

    C is 2048 for resnet50/101/152 and 512 for resnet18/34.
    """
    torch.manual_seed(RANDOM_SEED)
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = nn.Identity()
    if weights != RANDOM:
        model.load_state_dict(_without_classifier(_appearance_state_dict(arch, weights)))
    return model.eval()


def build_motion(arch: str, weights: str) -> nn.Module:
    """R(2+1)D VideoResNet, (N, 3, T, H, W) -> (N, 512) after global spatio-temporal pooling."""
    torch.manual_seed(RANDOM_SEED)
    model = VideoResNet(
        block=BasicBlock,
        conv_makers=[Conv2Plus1D] * 4,
        layers=R2PLUS1D_LAYERS[arch],
        stem=R2Plus1dStem,
    )
    model.fc = nn.Identity()
    if weights != RANDOM:
        state = _load_state_dict(_existing_file(weights, "features.motion.weights"))
        model.load_state_dict(_without_classifier(state))
    return model.eval()


def check_weights_available(arch: str, weights: str, key: str) -> None:
    """Raise WeightsError unless `weights` can be loaded offline (called before any work)."""
    if weights == RANDOM:
        return
    if arch.startswith("resnet") and not Path(weights).suffix:
        _cached_torchvision_file(arch, weights)
    else:
        _existing_file(weights, key)


def _appearance_state_dict(arch: str, weights: str) -> dict[str, torch.Tensor]:
    if Path(weights).suffix:
        return _load_state_dict(_existing_file(weights, "features.appearance.weights"))
    return _load_state_dict(_cached_torchvision_file(arch, weights))


def _cached_torchvision_file(arch: str, weights: str) -> Path:
    enum = torchvision.models.get_model_weights(arch)
    try:
        url = enum[weights].url
    except KeyError as error:
        known = ", ".join(member.name for member in enum)
        raise WeightsError(
            f"features.appearance.weights '{weights}' is not a {arch} weights name ({known})"
        ) from error
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not path.is_file():
        raise WeightsError(
            f"{arch} weights {weights} are not in the torch hub cache ({path}). On a machine "
            f'with internet run: python -c "import torchvision; torchvision.models.{arch}'
            f"(weights='{weights}')\" (set TORCH_HOME to share the cache), or download {url} "
            "and set features.appearance.weights to the file's path."
        )
    return path


def _existing_file(weights: str, key: str) -> Path:
    if not weights:
        raise WeightsError(
            f"{key} is empty: set it to a local state-dict file (e.g. the IG65M R(2+1)D-34 "
            "release converted to torchvision's VideoResNet layout), or to 'random' for an "
            "explicitly untrained network (demo and tests only)."
        )
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"{key}: no weights file at {path}")
    return path


def _without_classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state.items() if not key.startswith("fc.")}


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state
