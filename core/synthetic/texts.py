"""Templated feature explanations and user-like search queries over one shared vocabulary.

Explanations read like an LLM explainer's ("French words for family members", "closing
parentheses in Lisp code"); queries like what a researcher types into the search box ("French
words", "python imports", "dates in German"). Both fill `{slot}` templates with items of
vocab.SLOTS: explanations with an item's phrase, queries with its short form, so a query names
the same things its nearest explanations do (the recall benchmark of the vector index relies
on it).

Cost: O(n) template fills for n texts (Python string formatting, ~0.5 s per 100k); the random
draws are made in batches, never one numpy call per text.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from core.synthetic.vocab import SLOTS

# Explanation templates. Slots: L language, P programming language, C code construct, T topic,
# S syntactic role, E named-entity type, U punctuation, N number format, X text genre,
# O position, K code context. The three-slot ones supply most of the 10^5 distinct texts.
EXPLANATION_TEMPLATES: tuple[str, ...] = (
    "{L} words for {T}",
    "{T} vocabulary in {L}",
    "{L} {S}",
    "{S} in {L} text",
    "{S} in {L} {X}",
    "{P} {C}",
    "{C} in {P} code",
    "{C} in {P} {K}",
    "{N} written in {L}",
    "{N} in {X}",
    "{N} in {L} {X}",
    "{E} in {X}",
    "{E} in {L} {X}",
    "{E} in {L}",
    "{U} {O}",
    "{U} in {X}",
    "{U} in {P} code",
    "{S} {O}",
    "words related to {T}",
    "terms related to {T} in {X}",
    "words about {T} in {L} {X}",
    "{S} describing {T}",
    "{X} about {T}",
    "{L} {X} about {T}",
    "{S} after {U}",
    "the token after {U} in {P} code",
    "{N} {O}",
    "{E} {O}",
    "mentions of {E} in {X} about {T}",
    "identifiers related to {T} in {P} code",
    "{C} in {P} code about {T}",
)

# Query templates: short, loosely phrased, often lower-cased by the user.
QUERY_TEMPLATES: tuple[str, ...] = (
    "{L} words",
    "{T} in {L}",
    "{L} {T}",
    "{P} {C}",
    "{C}",
    "{C} in {P}",
    "{N}",
    "{N} in {L}",
    "{L} {N}",
    "{E}",
    "{E} in {X}",
    "{S}",
    "{S} in {L}",
    "{L} {S}",
    "{U}",
    "{U} in code",
    "{U} in {P}",
    "{T}",
    "{T} words",
    "{X}",
    "{X} about {T}",
    "numbers in {N}",
    "{E} in {L}",
    "{P} code",
)


@dataclass(frozen=True)
class _Template:
    text: str
    slots: tuple[str, ...]  # slot letters in order of appearance

    @property
    def size(self) -> int:
        """Distinct fills (slot values combined)."""
        return int(np.prod([len(SLOTS[s]) for s in self.slots]))


def _parse(templates: tuple[str, ...]) -> list[_Template]:
    return [
        _Template(t, tuple(f for _, f, _, _ in string.Formatter().parse(t) if f)) for t in templates
    ]


def _fill(
    templates: list[_Template], n: int, seed: int, short: bool
) -> tuple[list[str], list[tuple[str, ...]]]:
    """n distinct texts and each one's hint words (those of the items it names).

    Templates are drawn with weight ∝ sqrt(distinct fills), so small templates still appear
    but do not exhaust themselves into a stream of rejected duplicates.
    """
    space = sum(min(t.size, n) for t in templates)
    if n > space:
        raise ValueError(f"asked for {n} distinct texts; these templates make at most {space}")
    rng = np.random.default_rng(seed)
    weight = np.sqrt([t.size for t in templates])
    letters = sorted(SLOTS)
    seen: dict[str, tuple[str, ...]] = {}
    for _ in range(64):  # rounds of batched draws; each round adds most of what is missing
        batch = 2 * (n - len(seen)) + 64
        which = rng.choice(len(templates), size=batch, p=weight / weight.sum())
        # (batch, slot letters + 1) uniform in [0, 1): one column per slot, the last for case
        picks = rng.random((batch, len(letters) + 1))
        for row, t_i in enumerate(which):
            tpl = templates[t_i]
            items = {
                s: SLOTS[s][int(picks[row, letters.index(s)] * len(SLOTS[s]))] for s in tpl.slots
            }
            text = tpl.text.format(**{s: i.short if short else i.phrase for s, i in items.items()})
            if short and picks[row, -1] < 0.5:
                text = text.lower()  # half the users type in lower case
            if text not in seen:
                seen[text] = _interleave([i.hints for i in items.values()])
                if len(seen) == n:
                    return list(seen), list(seen.values())
    raise ValueError(f"could not draw {n} distinct texts (got {len(seen)})")


def _interleave(lists: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Round-robin over the items' hints, so the first few name every item of the text."""
    longest = max((len(x) for x in lists), default=0)
    return tuple(x[i] for i in range(longest) for x in lists if i < len(x))


def explanation_pool(n: int, seed: int = 0) -> tuple[list[str], list[tuple[str, ...]]]:
    """n distinct explanation texts and, per text, the hint words of the items it names (the
    tokens such a feature would fire on: ' mother', ' import', ')' ...)."""
    return _fill(_parse(EXPLANATION_TEMPLATES), n, seed, short=False)


def user_queries(n: int, seed: int = 0) -> list[str]:
    """n distinct search queries phrased as a researcher would type them ("French words",
    "python imports", "dates in German", "negation")."""
    return _fill(_parse(QUERY_TEMPLATES), n, seed + 1_000_003, short=True)[0]


def max_explanations() -> int:
    """How many distinct explanations the templates can make."""
    return sum(t.size for t in _parse(EXPLANATION_TEMPLATES))
