"""The published reference figures: ComfyUI on an RTX 4090 vs an RTX 5090.

Average seconds per run of the official templates, same settings on both
cards (as summarised in shared/notes/comfyui-protocol.md). Only the means are
published, so each workflow carries a single "run" equal to the mean; min,
max and median are that same number.
"""

from __future__ import annotations

from nomad.bench._results import BenchResult, WorkflowStats

# workflow name in nomad -> (RTX 4090 s, RTX 5090 s, what was published)
PUBLISHED: dict[str, tuple[float, float, str]] = {
    "sd35_large": (8.96, 5.96, "sd3.5_simple_example"),
    "flux_schnell": (4.92, 1.80, "flux_schnell_full_text_to_image"),
    "flux_dev": (16.05, 10.11, "flux dev (custom template)"),
    "wan22_t2v": (61.87, 37.15, "video_wan2_2_14B_t2v (fp8 + 4-step LoRA)"),
    "qwen_image_edit": (9.62, 4.44, "image_qwen_image_edit_2509"),
}

GPUS = (("NVIDIA GeForce RTX 4090", 24.0), ("NVIDIA GeForce RTX 5090", 32.0))


def reference_results() -> list[BenchResult]:
    """The published figures as two results (4090 first), ``source="published"``."""
    out = []
    for index, (gpu, vram) in enumerate(GPUS):
        workflows = {
            name: WorkflowStats(name, [(t4090, t5090)[index]], params={"template": what})
            for name, (t4090, t5090, what) in PUBLISHED.items()
        }
        out.append(
            BenchResult(
                gpu,
                vram,
                workflows,
                source="published",
                note="published averages; one value per workflow",
            )
        )
    return out
