"""Writes tests/data/taesd_tiny/: a TAESD-shaped AutoencoderTiny with 8 channels and seeded
random weights (diffusers layout, decoder only), and golden.safetensors with a latent and what
diffusers' decoder makes of it. Needs torch, diffusers, safetensors (see
tests/side_by_side/run.sh for a virtual environment that has them)."""

import json
from pathlib import Path

import torch
from diffusers import AutoencoderTiny
from safetensors.torch import save_file

out = Path(__file__).parent / "taesd_tiny"
out.mkdir(exist_ok=True)
torch.manual_seed(0)
config = dict(
    encoder_block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(8, 8, 8, 8),
    num_encoder_blocks=(1, 1, 1, 1),
    num_decoder_blocks=(3, 3, 3, 1),
)
model = AutoencoderTiny(**config).eval()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.randn_like(p) * 0.3)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("decoder.")}
    save_file(tensors, out / "diffusion_pytorch_model.safetensors")
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}
    cfg["_class_name"] = "AutoencoderTiny"
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    latent = torch.randn(1, 4, 5, 6) * 2
    # diffusers' decoder ends in [-1, 1]; TAESD's own output is in [0, 1].
    image = (model.decoder(latent) + 1) / 2
    save_file({"latent": latent, "image": image.contiguous()}, out / "golden.safetensors")
print("wrote", out)
