"""The pack's nodes as ComfyUI's /object_info lists them, frozen in golden_object_info.json.

A node schema change must show up as a reviewed diff of that file: the unit tests check that the specs still
render exactly it (no ComfyUI needed), the integration tests that a live ComfyUI still reports exactly it.
After changing a node's inputs or outputs on purpose, regenerate it and commit the diff with the change:

    .venv/bin/python -m tests.integration.golden
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).with_name("golden_object_info.json")
REGENERATE = ".venv/bin/python -m tests.integration.golden"


def render() -> dict[str, dict[str, Any]]:
    """Our nodes' /object_info entries from the specs, as JSON would carry them (tuples become lists)."""
    from happyhorse.comfy import specs

    return json.loads(json.dumps({s.node_id: specs.object_info(s) for s in specs.node_specs()}))


def dumps(info: dict) -> str:
    return json.dumps(info, indent=1, ensure_ascii=False) + "\n"


def load() -> dict[str, dict[str, Any]]:
    return json.loads(GOLDEN.read_text())


def mismatch(actual: dict, where: str, limit: int = 25) -> str:
    """'' when `actual` is exactly the golden file, else where they differ and what to do about it."""
    changes = list(_differences(load(), actual, ""))
    if not changes:
        return ""
    shown = "\n".join(f"  {c}" for c in changes[:limit])
    more = f"\n  ... and {len(changes) - limit} more" if len(changes) > limit else ""
    return (f"{where} differs from the committed {GOLDEN.relative_to(GOLDEN.parents[2])} (committed -> now):\n"
            f"{shown}{more}\nIf you changed a node schema on purpose, regenerate it with `{REGENERATE}`, "
            f"review the diff and commit it with the change.")


def _differences(old: Any, new: Any, path: str):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            here = f"{path}.{key}" if path else key
            if key not in new:
                yield f"{here}: removed"
            elif key not in old:
                yield f"{here}: added {_short(new[key])}"
            else:
                yield from _differences(old[key], new[key], here)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            # Dynamic combo options are named by their key: provider[1].options[simulator]...
            same_key = isinstance(a, dict) and isinstance(b, dict) and "key" in a and a["key"] == b.get("key")
            label = a["key"] if same_key else i
            yield from _differences(a, b, f"{path}[{label}]")
    elif old != new or type(old) is not type(new):
        yield f"{path}: {_short(old)} -> {_short(new)}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 100 else text[:97] + "..."


def main() -> int:
    GOLDEN.write_text(dumps(render()))
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
