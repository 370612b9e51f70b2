"""Hook names of other projects -> atlas site names ("L12/resid_post").

METHODS §1: resid_post of layer L is the output of decoder block L; mlp_out and attn_out are
the outputs of that block's MLP and attention submodules. Names we do not recognise are
returned unchanged, so an unusual hook still reaches the user verbatim.
"""

from __future__ import annotations

import re

# TransformerLens hook names (SAELens, Llama Scope) and HF module paths (sparsify hookpoints).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^blocks\.(\d+)\.hook_resid_post$"), "resid_post"),
    (re.compile(r"^blocks\.(\d+)\.hook_mlp_out$"), "mlp_out"),
    (re.compile(r"^blocks\.(\d+)\.hook_attn_out$"), "attn_out"),
    (re.compile(r"^(?:[\w.]*\.)?(?:layers|h)\.(\d+)$"), "resid_post"),
    (re.compile(r"^(?:[\w.]*\.)?(?:layers|h)\.(\d+)\.mlp$"), "mlp_out"),
    (re.compile(r"^(?:[\w.]*\.)?(?:layers|h)\.(\d+)\.(?:self_attn|attn|attention)$"), "attn_out"),
)
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")


def site_from_hook(hook: str) -> str:
    """'blocks.5.hook_resid_post' / 'layers.5' -> 'L5/resid_post'; unknown names unchanged."""
    for pattern, kind in _PATTERNS:
        m = pattern.match(hook)
        if m:
            return f"L{int(m[1])}/{kind}"
    m = _RESID_PRE.match(hook)
    if m and int(m[1]) > 0:  # the input of block L is the output of block L-1
        return f"L{int(m[1]) - 1}/resid_post"
    return hook
