"""Fixtures for the ComfyUI client tests: small API-format graphs for FakeComfy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def t2i_graph(seed: int = 7, steps: int = 4, text: str = "a red fox") -> dict[str, Any]:
    """A Flux-schnell-shaped text-to-image graph (the double runs no model)."""
    return {
        "38": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux1-schnell.safetensors", "weight_dtype": "default"},
        },
        "40": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": "clip_l.safetensors",
                "clip_name2": "t5xxl_fp16.safetensors",
                "type": "flux",
                "device": "default",
            },
        },
        "39": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["40", 0]}},
        "42": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "27": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
        },
        "31": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["38", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["6", 0],
                "negative": ["42", 0],
                "latent_image": ["27", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["31", 0], "vae": ["39", 0]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"},
        },
    }


def edit_graph(image: str = "input.png") -> dict[str, Any]:
    """LoadImage → ImageInvert → SaveImage: the no-weight graph real ComfyUI also runs."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "edit"}},
    }


def video_graph(seed: int = 3) -> dict[str, Any]:
    """A Wan-2.2-shaped text-to-video graph ending in SaveVideo."""
    return {
        "75": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "wan.safetensors", "weight_dtype": "default"},
        },
        "71": {
            "class_type": "CLIPLoader",
            "inputs": {"clip_name": "umt5.safetensors", "type": "wan", "device": "default"},
        },
        "73": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_vae.safetensors"}},
        "89": {"class_type": "CLIPTextEncode", "inputs": {"text": "waves", "clip": ["71", 0]}},
        "74": {
            "class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": 640, "height": 640, "length": 81, "batch_size": 1},
        },
        "81": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": ["75", 0],
                "add_noise": "enable",
                "noise_seed": seed,
                "steps": 4,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["89", 0],
                "negative": ["89", 0],
                "latent_image": ["74", 0],
                "start_at_step": 0,
                "end_at_step": 4,
                "return_with_leftover_noise": "disable",
            },
        },
        "87": {"class_type": "VAEDecode", "inputs": {"samples": ["81", 0], "vae": ["73", 0]}},
        "88": {"class_type": "CreateVideo", "inputs": {"images": ["87", 0], "fps": 16}},
        "80": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["88", 0],
                "filename_prefix": "video/ComfyUI",
                "format": "auto",
                "codec": "auto",
            },
        },
    }


def preview_graph(batch: int = 2) -> dict[str, Any]:
    """EmptyImage(batch) → SaveImage and PreviewImage: what UI exports usually look like."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": batch, "color": 0},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "nomad"},
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


PREVIEW_BINDING = """name: preview_and_save
title: EmptyImage batch 2 saved and previewed
output: image
params:
  batch: {type: int, node: "1", input: batch_size, default: 2, min: 1, max: 4}
  seed: {type: int, node: "1", input: color, default: 0, min: 0, max: 16777215}
  prompt: {type: str, node: "4", input: value, default: "", help: "unused: front doors send one"}
"""


def write_preview_workflow(folder: Path, name: str = "preview_and_save") -> Path:
    """A binding + graph pair for :func:`preview_graph` in ``folder``; returns the binding path."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = preview_graph()
    graph["4"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": ""}}  # not run
    (folder / f"{name}.json").write_text(json.dumps(graph))
    binding = folder / f"{name}.yaml"
    binding.write_text(PREVIEW_BINDING.replace("name: preview_and_save", f"name: {name}"))
    return binding


@pytest.fixture
def t2i() -> dict[str, Any]:
    return t2i_graph()
