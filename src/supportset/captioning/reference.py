"""The paper's captioning rows (appendix 6.4, Tables 7-9), copied from its text only.

``CAPTION_ROWS`` maps a table name to (row, (BLEU-4, METEOR, ROUGE-L, CIDEr)) pairs, x 100
as printed; ``None`` marks a value the paper does not give ("-"). The columns follow the
order in which 6.4 names the metrics ("we report BLEU4, METEOR, Rogue-L and CIDEr").

Our copy of the paper keeps only the end of Table 9 (ActivityNet paragraphs): its four
baselines with BLEU-4 and METEOR, and both of the paper's rows. The name of the first
baseline is cut off before its citation, so the row carries the citation alone. Tables 7
(MSR-VTT, the 2,990-video test split) and 8 (VATEX) are lost, as a search of public
copies found no text of them either; their tables print what 6.4 says in
``CAPTION_NOTES`` and no paper rows.
"""

from __future__ import annotations

CaptionValues = tuple[float | None, float | None, float | None, float | None]

CAPTION_ROWS: dict[str, list[tuple[str, CaptionValues]]] = {
    "msrvtt_table7": [],
    "vatex_table8": [],
    "activitynet_table9": [
        ("(Krishna et al., 2017)", (1.6, 8.9, None, None)),
        ("DVC-D-A (Li et al., 2018)", (1.7, 9.3, None, None)),
        ("Bi-LSTM+TempoAttn (Zhou et al., 2018b)", (2.1, 10.0, None, None)),
        ("Masked Transformer (Zhou et al., 2018b)", (2.8, 11.1, None, None)),
        ("Ours, ActivityNet only", (1.5, 6.9, 17.8, 3.2)),
        ("Ours, HT100M + ActivityNet", (1.4, 6.9, 17.5, 3.1)),
    ],
}

_METRICS_SENTENCE = (
    'Appendix 6.4: "To measure captioning/text generation performance, we report BLEU4, '
    "METEOR, Rogue-L and CIDEr metrics. We report results on the MSR-VTT, VATEX and "
    'ActivityNet datasets."'
)

CAPTION_NOTES: dict[str, str] = {
    "msrvtt_table7": (
        f'{_METRICS_SENTENCE} The appendix on datasets: "For captioning task, we evaluate on the '
        'standard testing split with 2,990 videos." The rows of Table 7 are lost from our '
        "copy of the paper."
    ),
    "vatex_table8": f"{_METRICS_SENTENCE} The rows of Table 8 are lost from our copy of the paper.",
    "activitynet_table9": (
        f"{_METRICS_SENTENCE} The appendix on datasets: "
        '"we concatenate descriptions of segments in a video to construct "video-paragraph" '
        "for retrieval and captioning ... report the "
        "performance on the 5K 'val1' split.\" The first baseline's name is cut off in our "
        "copy of the paper; its citation is kept."
    ),
}
