"""Reference tokens in a prompt: `[Image 1]`, `[Image 2]`, ... and `character1`, `character2`, ...

Hosts document two ways for a reference-to-video or edit prompt to name its reference images:
  IMAGE_STYLE      `[Image 1]` .. `[Image 9]`   (Apiframe and reAPI 1.1, in their docs)
  CHARACTER_STYLE  `character1` .. `character9` (DashScope's HappyHorse 1.0 and 1.1 reference-to-video examples,
                                                 and Comfy's router docs)
Both are recognised whatever the host. A token naming reference k when fewer than k are given would make the
host guess (or silently ignore it), so it is refused before anything is sent; a reference the prompt never
names is only worth a warning (the model still sees it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .capabilities import ProviderCaps
from .errors import Violation
from .request import MODE_TITLES, GenerationRequest

IMAGE_STYLE = "[Image N]"
CHARACTER_STYLE = "characterN"

_IMAGE_TOKEN = re.compile(r"\[\s*image\s*(\d+)\s*\]", re.IGNORECASE)
# `character1` but not `characters` or `character10x`; the number may not run into more letters or digits.
_CHARACTER_TOKEN = re.compile(r"\bcharacter(\d+)(?![A-Za-z0-9_])", re.IGNORECASE)

REFERENCE_MODES = ("r2v", "edit")


@dataclass(frozen=True)
class Token:
    text: str           # as written in the prompt, e.g. "[Image 3]" or "Character2"
    index: int          # 1-based reference number


def reference_tokens(prompt: str) -> list[Token]:
    """Every reference token in the prompt, in order of appearance, in either style."""
    found = [(m.start(), Token(m.group(0), int(m.group(1)))) for m in _IMAGE_TOKEN.finditer(prompt or "")]
    found += [(m.start(), Token(m.group(0), int(m.group(1)))) for m in _CHARACTER_TOKEN.finditer(prompt or "")]
    return [t for _, t in sorted(found, key=lambda pair: pair[0])]


def token_for(style: str | None, index: int) -> str:
    return f"character{index}" if style == CHARACTER_STYLE else f"[Image {index}]"


def style_hint(caps: ProviderCaps | None) -> str:
    """How to name references for this host (or in general), for tooltips, help and messages."""
    style = caps.reference_token_style if caps is not None else None
    if style is None:
        where = f"{caps.display_name} documents no style; " if caps is not None else ""
        return f"{where}name them [Image 1], [Image 2], ... or character1, character2, ... (both are recognised)"
    return (f"{caps.display_name} names them {token_for(style, 1)}, {token_for(style, 2)}, ... "
            f"(the other style is recognised too)")


def reference_violations(req: GenerationRequest, caps: ProviderCaps | None = None) -> list[Violation]:
    """A token naming a reference that was not given (k > count) is refused; only r2v and edit take references."""
    if req.mode not in REFERENCE_MODES:
        return []
    count = len(req.reference_images)
    beyond = [t for t in reference_tokens(req.prompt) if t.index > count or t.index < 1]
    if not beyond:
        return []
    names = ", ".join(dict.fromkeys(t.text for t in beyond))
    given = f"only {count} reference image{'s are' if count != 1 else ' is'} given" if count else \
        "no reference images are given"
    fix = "connect more references or change the prompt" if count else "connect reference images or remove it"
    return [Violation("prompt", f"names {names} but {given} for {MODE_TITLES[req.mode]}: {fix} "
                                f"(references count from 1 in the order given; {style_hint(caps)})")]


def reference_warnings(req: GenerationRequest, caps: ProviderCaps | None = None) -> list[str]:
    """References the prompt never names: allowed, but often a mistake (the prompt cannot steer them)."""
    if req.mode not in REFERENCE_MODES or not req.reference_images:
        return []
    named = {t.index for t in reference_tokens(req.prompt)}
    unnamed = [i for i in range(1, len(req.reference_images) + 1) if i not in named]
    if not unnamed:
        return []
    style = caps.reference_token_style if caps is not None else None
    tokens = ", ".join(token_for(style, i) for i in unnamed)
    which = "that reference is" if len(unnamed) == 1 else "those references are"
    return [f"the prompt never names {tokens}; {which} still sent, but the prompt cannot say what "
            f"{'it is' if len(unnamed) == 1 else 'they are'} for ({style_hint(caps)})"]
