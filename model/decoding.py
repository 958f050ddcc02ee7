"""CTC labels: text <-> label ids, greedy decoding, and the error rates reported everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import torch

BLANK = 0


def encode(text: str, vocabulary: Sequence[str]) -> list[int]:
    index = {symbol: i for i, symbol in enumerate(vocabulary)}
    return [index[ch] for ch in text]


def greedy_decode(logits: torch.Tensor, vocabulary: Sequence[str]) -> str:
    """(time, vocab) -> text: best label per frame, repeats merged, blanks dropped."""
    best = logits.argmax(dim=-1).tolist()
    out, previous = [], BLANK
    for label in best:
        if label != previous and label != BLANK:
            out.append(vocabulary[label])
        previous = label
    return "".join(out)


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """(CER, WER) in percent, as edit distance over reference length summed over the set."""
    char_errors = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
    word_errors = sum(edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses))
    chars = max(1, sum(len(r) for r in references))
    words = max(1, sum(len(r.split()) for r in references))
    return 100.0 * char_errors / chars, 100.0 * word_errors / words
