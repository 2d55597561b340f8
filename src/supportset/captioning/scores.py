"""BLEU-4, METEOR, ROUGE-L and CIDEr of generated captions, by the COCO caption tools.

Appendix 6.4: "To measure captioning/text generation performance, we report BLEU4,
METEOR, Rogue-L and CIDEr metrics". The scorers are pycocoevalcap's (the MS-COCO caption
evaluation code, as COCOEvalCap runs it): both sides are tokenized by its PTB tokenizer
(Stanford CoreNLP), then BLEU (n = 4), METEOR 1.5, ROUGE-L and CIDEr-D score every video
against all of its references. The tokenizer and METEOR are Java programs: without a Java
runtime scoring stops before any work, saying how to install one. Scores are reported x 100,
as the paper's tables print them.
"""

from __future__ import annotations

import shutil
import subprocess

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


class JavaMissingError(RuntimeError):
    """No Java runtime for the COCO caption tools; the message says how to install one."""


def check_java() -> None:
    """Stop unless `java` runs: pycocoevalcap's tokenizer and METEOR are Java programs."""
    java = shutil.which("java")
    problem = "no `java` on PATH"
    if java is not None:
        result = subprocess.run([java, "-version"], capture_output=True, check=False)
        if result.returncode == 0:
            return
        problem = f"`{java} -version` failed: {result.stderr.decode(errors='replace').strip()}"
    raise JavaMissingError(
        f"captioning metrics need a Java runtime (pycocoevalcap's PTB tokenizer and METEOR "
        f"1.5 are Java programs), but there is {problem}. Install one, e.g. on Debian/Ubuntu "
        "`apt-get install default-jre-headless`, or with conda `conda install openjdk`."
    )


def caption_scores(generated: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """{BLEU-4, METEOR, ROUGE-L, CIDEr} x 100 of the generated caption of each video against
    all its references (keys: the same video ids on both sides)."""
    if set(generated) != set(references):
        raise ValueError("generated captions and references must cover the same videos")
    if not generated:
        raise ValueError("no generated caption to score")
    check_java()
    tokenizer = PTBTokenizer()
    candidates = tokenizer.tokenize({v: [{"caption": text}] for v, text in generated.items()})
    truths = tokenizer.tokenize(
        {v: [{"caption": text} for text in texts] for v, texts in references.items()}
    )
    bleu, _ = Bleu(4).compute_score(truths, candidates, verbose=0)
    scores = {
        "BLEU-4": bleu[3],
        "METEOR": _meteor(truths, candidates),
        "ROUGE-L": Rouge().compute_score(truths, candidates)[0],
        "CIDEr": Cider().compute_score(truths, candidates)[0],
    }
    return {name: 100.0 * float(value) for name, value in scores.items()}


def _meteor(truths: dict[str, list[str]], candidates: dict[str, list[str]]) -> float:
    """METEOR 1.5 over all videos; its Java process is closed before returning."""
    meteor = Meteor()
    try:
        return meteor.compute_score(truths, candidates)[0]
    finally:
        meteor.meteor_p.stdin.close()
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()
