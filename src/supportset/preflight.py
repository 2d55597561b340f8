"""Checks the workflow runs while it builds the DAG, before any job: named weights that
are not available offline stop the run there, with a message that says how to provide them.
"""

from __future__ import annotations

from supportset.features.text import TextSettings, check_model_available
from supportset.features.visual import VisualSettings, check_weights
from supportset.settings import from_mapping


def check_offline_weights(features: dict, text: dict) -> None:
    """Raise WeightsError or TextModelError for a dataset's missing weights."""
    check_weights(from_mapping(VisualSettings, features))
    text_settings = from_mapping(TextSettings, text)
    if text_settings.model != "tiny":
        check_model_available(text_settings.model)
