"""ComfyUI integration: the only part of the pack that imports comfy_api, comfy.*, server or folder_paths.

specs, params, estimates, display and tensors are host-neutral (CI imports them without ComfyUI); the other
modules are loaded only inside ComfyUI, through extension.py.
"""
