"""A result node reads from the prompt which of its outputs are linked (frames and audio cost a decode)."""
from __future__ import annotations

from happyhorse.comfy.specs import RESULT_OUTPUTS
from happyhorse.comfy.wiring import EVERYTHING, Wanted, linked_outputs, wanted_outputs


def api_prompt(*links: tuple[str, str, int]) -> dict:
    """Node "1" is ours; each (consumer id, input name, our output index) adds a consumer node."""
    prompt = {"1": {"class_type": "HappyHorsePack.Text2Video", "inputs": {"prompt": "a horse", "seed": 3}}}
    for consumer, name, index in links:
        prompt.setdefault(consumer, {"class_type": "X", "inputs": {}})["inputs"][name] = ["1", index]
    return prompt


def index(name: str) -> int:
    return next(i for i, o in enumerate(RESULT_OUTPUTS) if o.id == name)


def test_only_linked_outputs_are_wanted():
    video_only = api_prompt(("2", "video", index("video")), ("3", "source", index("file_path")))
    assert wanted_outputs(video_only.values(), "1") == Wanted(frames=False, audio=False)
    frames = api_prompt(("2", "images", index("frames")))
    assert wanted_outputs(frames.values(), "1") == Wanted(frames=True, audio=False)
    both = api_prompt(("2", "images", index("frames")), ("2", "audio", index("audio")))
    assert wanted_outputs(both.values(), "1") == Wanted(frames=True, audio=True)


def test_links_to_other_nodes_and_look_alike_values_do_not_count():
    prompt = api_prompt(("2", "video", 0))
    prompt["4"] = {"class_type": "Y", "inputs": {"images": ["5", index("frames")],      # another node's frames
                                                  "pair": [1, index("frames")],         # not a link: int id
                                                  "text": "1", "flag": ["1", True]}}    # bool is no index
    assert linked_outputs(prompt.values(), "1") == {0}
    assert wanted_outputs(prompt.values(), "1") == Wanted(frames=False, audio=False)


def test_subgraph_ids_and_float_indices_as_comfyui_accepts_them():
    prompt = {"7:3": {"class_type": "HappyHorsePack.Text2Video", "inputs": {}},
              "9": {"class_type": "PreviewImage", "inputs": {"images": ["7:3", float(index("frames"))]}}}
    assert wanted_outputs(prompt.values(), "7:3").frames


def test_unknown_wiring_decodes_everything_and_keys_differ_by_wiring():
    assert wanted_outputs(None, "1") == EVERYTHING
    assert wanted_outputs({}.values(), None) == EVERYTHING
    keys = {Wanted(f, a).key for f in (True, False) for a in (True, False)}
    assert len(keys) == 4, "each wiring must give ComfyUI a different cache fingerprint"
