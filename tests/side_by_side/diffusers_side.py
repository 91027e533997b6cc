"""The diffusers half of the side-by-side benchmark (see run.sh beside this file).

    python diffusers_side.py write DIR TOKENIZER_DIR   # a full-size SD 1.5 with random weights
    python diffusers_side.py time DIR PART SIZE RUNS   # one JSON line, like `interconcept bench --part`

Each `time` call runs in its own process so that the peak memory it reports is its part's.
"""

import json
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch


def write(out: Path, tokenizer: Path) -> None:
    """Stable Diffusion 1.5's architecture (the configs of runwayml/stable-diffusion-v1-5) with
    seeded random weights, saved as safetensors in the diffusers layout."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    unet.save_pretrained(out / "unet", safe_serialization=True)
    del unet
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
        scaling_factor=0.18215,
    )
    vae.save_pretrained(out / "vae", safe_serialization=True)
    del vae
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
        )
    )
    text.save_pretrained(out / "text_encoder", safe_serialization=True)
    DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    ).save_pretrained(out / "scheduler")
    shutil.copytree(tokenizer, out / "tokenizer", dirs_exist_ok=True)
    (out / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "scheduler": ["diffusers", "DDIMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            indent=2,
        )
    )


def time_part(model: Path, part: str, size: int, runs: int) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(1)
    side = size // 8
    latents = torch.randn(1, 4, side, side)
    tokenizer = CLIPTokenizer.from_pretrained(model / "tokenizer")
    prompt = "a photograph of an astronaut riding a horse"
    with torch.no_grad():
        # All three parts are loaded for every measurement, as a pipeline holds them, so that
        # peak memory compares with this program's (which loads the whole model).
        text = CLIPTextModel.from_pretrained(model / "text_encoder")
        unet = UNet2DConditionModel.from_pretrained(model / "unet")
        vae = AutoencoderKL.from_pretrained(model / "vae")
        ids = tokenizer(
            ["", prompt], padding="max_length", max_length=77, return_tensors="pt"
        ).input_ids
        conditioning = text(ids)[0]
        if part == "unet":
            xs = torch.cat([latents, latents])
            once = lambda: unet(xs, 500, encoder_hidden_states=conditioning).sample.sum()
        elif part == "vae":
            once = lambda: vae.decode(latents / 0.18215).sample.sum()
        elif part == "text":
            one = ids[1:]
            once = lambda: text(one)[0].sum()
        else:
            raise SystemExit(f"unknown part {part}")
        once()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            once()
            times.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "implementation": "diffusers",
                "part": part,
                "size": size,
                "ms": statistics.median(times) * 1e3,
                "runs": runs,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "write":
        write(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "time":
        time_part(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(__doc__)
