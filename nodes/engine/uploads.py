"""Turn media bytes into something the chosen provider accepts (data URI here; more backends plug in)."""
from __future__ import annotations

import base64

from .capabilities import ProviderCaps
from .errors import ConfigError
from .protocol import MediaRef
from .request import GenerationRequest, MediaInput


def data_uri(m: MediaInput) -> str:
    mime = m.mime or ("video/mp4" if m.kind == "video" else "image/png")
    return f"data:{mime};base64,{base64.b64encode(m.data or b'').decode('ascii')}"


def check_uploadable(req: GenerationRequest, caps: ProviderCaps) -> None:
    """Raise before anything is sent if some input cannot reach this provider."""
    needs_upload = [role for role, m in req.media() if m.data is not None]
    if needs_upload and not caps.accepts_data_uri:
        raise ConfigError(
            f"{caps.display_name} only takes public URLs, and no upload bucket is configured for "
            f"{', '.join(sorted(set(needs_upload)))}. Pass URLs instead of files, or configure an "
            f"S3-compatible bucket (see README: Uploads).")


async def prepare_media(req: GenerationRequest, caps: ProviderCaps) -> list[MediaRef]:
    check_uploadable(req, caps)
    refs: list[MediaRef] = []
    for role, m in req.media():
        refs.append(MediaRef(role, m.url if m.url is not None else data_uri(m)))
    return refs
