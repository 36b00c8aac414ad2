"""What the double knows about node classes: a tiny slice of ComfyUI's ``/object_info``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    """What the double knows about one node class (a tiny slice of /object_info)."""

    required: tuple[str, ...] = ()
    models: Mapping[str, str] = field(default_factory=dict)  # input name -> model folder
    output: str | None = None  # "image", "temp", "video", "webp" or "gifs" for output nodes
    minimum: Mapping[str, float] = field(default_factory=dict)


_LOADERS = {
    "UNETLoader": NodeSpec(("unet_name", "weight_dtype"), {"unet_name": "diffusion_models"}),
    "DualCLIPLoader": NodeSpec(
        ("clip_name1", "clip_name2", "type"),
        {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    ),
    "CLIPLoader": NodeSpec(("clip_name", "type"), {"clip_name": "text_encoders"}),
    "VAELoader": NodeSpec(("vae_name",), {"vae_name": "vae"}),
    "CheckpointLoaderSimple": NodeSpec(("ckpt_name",), {"ckpt_name": "checkpoints"}),
    "LoraLoaderModelOnly": NodeSpec(
        ("model", "lora_name", "strength_model"), {"lora_name": "loras"}
    ),
    "LoraLoader": NodeSpec(("model", "clip", "lora_name"), {"lora_name": "loras"}),
}
_SAMPLING = {
    "KSampler": NodeSpec(
        (
            "model",
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "denoise",
        ),
        minimum={"steps": 1, "cfg": 0.0, "denoise": 0.0},
    ),
    "KSamplerAdvanced": NodeSpec(
        (
            "model",
            "add_noise",
            "noise_seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise",
        ),
        minimum={"steps": 1},
    ),
}
_OTHER = {
    "CLIPTextEncode": NodeSpec(("text", "clip")),
    "CLIPTextEncodeFlux": NodeSpec(("clip", "clip_l", "t5xxl", "guidance")),
    "ConditioningZeroOut": NodeSpec(("conditioning",)),
    "EmptySD3LatentImage": NodeSpec(
        ("width", "height", "batch_size"), minimum={"width": 16, "height": 16}
    ),
    "EmptyLatentImage": NodeSpec(
        ("width", "height", "batch_size"), minimum={"width": 16, "height": 16}
    ),
    "EmptyHunyuanLatentVideo": NodeSpec(
        ("width", "height", "length", "batch_size"), minimum={"length": 1}
    ),
    "VAEDecode": NodeSpec(("samples", "vae")),
    "VAEEncode": NodeSpec(("pixels", "vae")),
    "LoadImage": NodeSpec(("image",)),
    "ImageInvert": NodeSpec(("image",)),
    "ImageBlur": NodeSpec(("image", "blur_radius", "sigma")),
    "ImageScale": NodeSpec(("image", "upscale_method", "width", "height", "crop")),
    "EmptyImage": NodeSpec(("width", "height", "batch_size", "color")),
    "CFGNorm": NodeSpec(("model", "strength")),
    "ModelSamplingAuraFlow": NodeSpec(("model", "shift")),
    "ModelSamplingSD3": NodeSpec(("model", "shift")),
    "FluxGuidance": NodeSpec(("conditioning", "guidance")),
    "FluxKontextImageScale": NodeSpec(("image",)),
    "TextEncodeQwenImageEditPlus": NodeSpec(("clip", "prompt")),
    "PrimitiveInt": NodeSpec(("value",)),
    "PrimitiveFloat": NodeSpec(("value",)),
    "PrimitiveBoolean": NodeSpec(("value",)),
    "PrimitiveStringMultiline": NodeSpec(("value",)),
    "ComfySwitchNode": NodeSpec(("switch", "on_false", "on_true")),
    "ComfyMathExpression": NodeSpec(("expression",)),
    "CreateVideo": NodeSpec(("images", "fps")),
    "SaveImage": NodeSpec(("images", "filename_prefix"), output="image"),
    "SaveImageAdvanced": NodeSpec(("images", "filename_prefix", "format"), output="image"),
    "PreviewImage": NodeSpec(("images",), output="temp"),
    "SaveVideo": NodeSpec(("video", "filename_prefix", "format", "codec"), output="video"),
    "SaveAnimatedWEBP": NodeSpec(("images", "filename_prefix", "fps"), output="webp"),
    # ComfyUI-VideoHelperSuite (custom node): reports files under "gifs" with a "format"
    "VHS_VideoCombine": NodeSpec(
        (
            "images",
            "frame_rate",
            "loop_count",
            "filename_prefix",
            "format",
            "pingpong",
            "save_output",
        ),
        output="gifs",
    ),
}
NODE_SPECS: dict[str, NodeSpec] = {**_LOADERS, **_SAMPLING, **_OTHER}
