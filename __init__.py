"""ComfyUI entry point of the HappyHorse pack. Imports nothing heavy: the nodes load inside comfy_entrypoint.

No NODE_CLASS_MAPPINGS on purpose: ComfyUI would then ignore comfy_entrypoint (the V3 path).
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.comfy.extension import HappyHorseExtension

    return HappyHorseExtension()
