"""Which custom node pack most likely provides a node type this ComfyUI does not know.

Pure data and one lookup: exact class names first, then name patterns (prefix, suffix, substring).
The packs are the seed custom nodes of the image (reference/seed-custom-nodes.txt) plus a few
other packs that shared workflows use very often (``seed=False``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodePack:
    """A custom node pack: its repository name and git URL; ``seed`` when the image installs it."""

    name: str
    url: str
    seed: bool = True


def _github(owner_repo: str, *, seed: bool = True) -> NodePack:
    return NodePack(owner_repo.split("/", 1)[1], f"https://github.com/{owner_repo}.git", seed)


KJNODES = _github("kijai/ComfyUI-KJNodes")
WANVIDEO = _github("kijai/ComfyUI-WanVideoWrapper")
GGUF = _github("city96/ComfyUI-GGUF")
EASY_USE = _github("yolain/ComfyUI-Easy-Use")
FRAME_INTERPOLATION = _github("Fannovel16/ComfyUI-Frame-Interpolation")
MULTIGPU = _github("pollockjj/ComfyUI-MultiGPU")
TENSORRT = _github("comfyanonymous/ComfyUI_TensorRT")
PROMPT_READER = _github("receyuki/comfyui-prompt-reader-node")
ESSENTIALS = _github("cubiq/ComfyUI_essentials")
IMPACT = _github("ltdrdata/ComfyUI-Impact-Pack")
IMPACT_SUBPACK = _github("ltdrdata/ComfyUI-Impact-Subpack")
EFFICIENCY = _github("jags111/efficiency-nodes-comfyui")
CUSTOM_SCRIPTS = _github("pythongosssss/ComfyUI-Custom-Scripts")
JPS = _github("JPS-GER/ComfyUI_JPS-Nodes")
USE_EVERYWHERE = _github("chrisgoringe/cg-use-everywhere")
CRYSTOOLS = _github("crystian/ComfyUI-Crystools")
RGTHREE = _github("rgthree/rgthree-comfy")
IMAGE_SAVER = _github("alexopus/ComfyUI-Image-Saver")
VHS = _github("Kosinkadink/ComfyUI-VideoHelperSuite")
WAN_BLOCKSWAP = _github("orssorbit/ComfyUI-wanBlockswap")
OPENROUTER = _github("gabe-init/ComfyUI-Openrouter_node")
CONTROLNET_AUX = _github("Fannovel16/comfyui_controlnet_aux")
SEEDVR2 = _github("numz/ComfyUI-SeedVR2_VideoUpscaler")
IPADAPTER = _github("cubiq/ComfyUI_IPAdapter_plus")
ATTENTION_OPTIMIZER = _github("D-Ogi/ComfyUI-Attention-Optimizer")
# not installed by the image, but common in shared workflows
ULTIMATE_UPSCALE = _github("ssitu/ComfyUI_UltimateSDUpscale", seed=False)
COMFYROLL = _github("Suzie1/ComfyUI_Comfyroll_CustomNodes", seed=False)
WAS = _github("WASasquatch/was-node-suite-comfyui", seed=False)
ADVANCED_CONTROLNET = _github("Kosinkadink/ComfyUI-Advanced-ControlNet", seed=False)
ANIMATEDIFF = _github("Kosinkadink/ComfyUI-AnimateDiff-Evolved", seed=False)
LTXVIDEO = _github("Lightricks/ComfyUI-LTXVideo", seed=False)

# Exact class names (checked first).
EXACT: dict[str, NodePack] = {
    "SetNode": KJNODES,
    "GetNode": KJNODES,
    "ColorMatch": KJNODES,
    "ConditioningMultiCombine": KJNODES,
    "GetImageSizeAndCount": KJNODES,
    "GrowMaskWithBlur": KJNODES,
    "ImageBatchMulti": KJNODES,
    "ImageConcanate": KJNODES,
    "INTConstant": KJNODES,
    "FloatConstant": KJNODES,
    "StringConstant": KJNODES,
    "StringConstantMultiline": KJNODES,
    "WidgetToString": KJNODES,
    "VRAM_Debug": KJNODES,
    "SplineEditor": KJNODES,
    "PointsEditor": KJNODES,
    "CreateShapeMask": KJNODES,
    "LoadWanVideoT5TextEncoder": WANVIDEO,
    "LoadWanVideoClipTextEncoder": WANVIDEO,
    "UnetLoaderGGUF": GGUF,
    "UnetLoaderGGUFAdvanced": GGUF,
    "CLIPLoaderGGUF": GGUF,
    "DualCLIPLoaderGGUF": GGUF,
    "TripleCLIPLoaderGGUF": GGUF,
    "QuadrupleCLIPLoaderGGUF": GGUF,
    "TensorRTLoader": TENSORRT,
    "STATIC_TRT_MODEL_CONVERSION": TENSORRT,
    "DYNAMIC_TRT_MODEL_CONVERSION": TENSORRT,
    "SDPromptReader": PROMPT_READER,
    "SDPromptSaver": PROMPT_READER,
    "SDParameterGenerator": PROMPT_READER,
    "SDPromptMerger": PROMPT_READER,
    "SDTypeConverter": PROMPT_READER,
    "SDAnyConverter": PROMPT_READER,
    "SDLoraLoader": PROMPT_READER,
    "SDLoraSelector": PROMPT_READER,
    "SDBatchLoader": PROMPT_READER,
    "FaceDetailer": IMPACT,
    "FaceDetailerPipe": IMPACT,
    "DetailerForEach": IMPACT,
    "DetailerForEachDebug": IMPACT,
    "SAMLoader": IMPACT,
    "ToBasicPipe": IMPACT,
    "FromBasicPipe": IMPACT,
    "BboxDetectorSEGS": IMPACT,
    "SegmDetectorSEGS": IMPACT,
    "UltralyticsDetectorProvider": IMPACT_SUBPACK,
    "Efficient Loader": EFFICIENCY,
    "Eff. Loader SDXL": EFFICIENCY,
    "LoRA Stacker": EFFICIENCY,
    "XY Plot": EFFICIENCY,
    "Image Saver": IMAGE_SAVER,
    "wanBlockSwap": WAN_BLOCKSWAP,
    "AIO_Preprocessor": CONTROLNET_AUX,
    "ControlNetPreprocessorSelector": CONTROLNET_AUX,
    "PrepImageForClipVision": IPADAPTER,
    "UltimateSDUpscale": ULTIMATE_UPSCALE,
    "UltimateSDUpscaleNoUpscale": ULTIMATE_UPSCALE,
    "ACN_AdvancedControlNetApply": ADVANCED_CONTROLNET,
}

# (how, text, pack): how is "prefix", "suffix" or "contains"; checked in this order.
PATTERNS: tuple[tuple[str, str, NodePack], ...] = (
    ("prefix", "VHS_", VHS),
    ("prefix", "WanVideo", WANVIDEO),
    ("suffix", "GGUF", GGUF),
    ("contains", "MultiGPU", MULTIGPU),
    ("contains", "DisTorch", MULTIGPU),
    ("suffix", "KJ", KJNODES),
    ("suffix", "KJv2", KJNODES),
    ("prefix", "easy ", EASY_USE),
    ("suffix", " VFI", FRAME_INTERPOLATION),
    ("contains", "TensorRT", TENSORRT),
    ("suffix", "+", ESSENTIALS),
    ("prefix", "Impact", IMPACT),
    ("contains", "SEGS", IMPACT),
    ("contains", "(Efficient)", EFFICIENCY),
    ("suffix", "|pysssss", CUSTOM_SCRIPTS),
    ("suffix", "(JPS)", JPS),
    ("contains", "Everywhere", USE_EVERYWHERE),
    ("suffix", "[Crystools]", CRYSTOOLS),
    ("suffix", "(rgthree)", RGTHREE),
    ("contains", "(Image Saver)", IMAGE_SAVER),
    ("contains", "OpenRouter", OPENROUTER),
    ("contains", "Openrouter", OPENROUTER),
    ("suffix", "Preprocessor", CONTROLNET_AUX),
    ("prefix", "SeedVR2", SEEDVR2),
    ("prefix", "IPAdapter", IPADAPTER),
    ("contains", "AttentionOptimizer", ATTENTION_OPTIMIZER),
    ("prefix", "CR ", COMFYROLL),
    ("suffix", "(WAS)", WAS),
    ("prefix", "ADE_", ANIMATEDIFF),
    ("prefix", "ACN_", ADVANCED_CONTROLNET),
    ("prefix", "LTXV", LTXVIDEO),
    # broad fallbacks last: core ComfyUI has its own Wan* nodes, so only unknown ones land here
    ("prefix", "Wan", WANVIDEO),
)


def likely_pack(class_type: str) -> NodePack | None:
    """The pack that most likely provides ``class_type``, or None when nothing matches."""
    name = class_type.strip()
    if name in EXACT:
        return EXACT[name]
    for how, text, pack in PATTERNS:
        if (
            (how == "prefix" and name.startswith(text))
            or (how == "suffix" and name.endswith(text))
            or (how == "contains" and text in name)
        ):
            return pack
    return None
