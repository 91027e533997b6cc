//! The embedded model's architecture, and writing it out in diffusers' folder layout.
//!
//! The sizes are chosen for two CPU cores: pictures of 32x32, latents of 4x8x8, a UNet of two
//! levels with cross-attention at both, a two-layer CLIP text transformer over CLIP's real
//! vocabulary. Every config file is the one diffusers or transformers would write for these
//! sizes, so the folder loads the same way a downloaded checkpoint does.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{D, Tensor};
use candle_nn::VarMap;
use candle_transformers::models::clip::text_model::ClipTextConfig;
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModelConfig;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use serde_json::json;

use crate::engine::config::{PerBlock, UNetJson, VaeJson};
use crate::engine::preview::LatentRgb;
use crate::engine::scheduler::ScheduleConfig;
use crate::engine::text_encoder::TextEncoderJson;

/// Sizes of the embedded model.
#[derive(Debug, Clone)]
pub struct EmbeddedArchitecture {
    /// Picture side in pixels.
    pub image_size: usize,
    /// Channels of the latent.
    pub latent_channels: usize,
    /// VAE channels per level.
    pub vae_channels: Vec<usize>,
    /// Group norm groups in the VAE.
    pub vae_groups: usize,
    /// UNet channels per level.
    pub unet_channels: Vec<usize>,
    /// Attention heads per UNet level.
    pub unet_heads: usize,
    /// Group norm groups in the UNet.
    pub unet_groups: usize,
    /// Width of the text encoder (and of the conditioning).
    pub text_width: usize,
    /// Text encoder layers.
    pub text_layers: usize,
    /// Text encoder heads.
    pub text_heads: usize,
    /// Text encoder MLP width.
    pub text_mlp: usize,
}

impl Default for EmbeddedArchitecture {
    fn default() -> Self {
        Self {
            image_size: 32,
            latent_channels: 4,
            vae_channels: vec![16, 32, 32],
            vae_groups: 8,
            unet_channels: vec![64, 64],
            unet_heads: 4,
            unet_groups: 8,
            text_width: 64,
            text_layers: 2,
            text_heads: 4,
            text_mlp: 128,
        }
    }
}

impl EmbeddedArchitecture {
    /// Pixels per latent cell along a side.
    pub fn downscale(&self) -> usize {
        1 << (self.vae_channels.len() - 1)
    }

    /// diffusers' `unet/config.json`.
    pub fn unet_json(&self) -> UNetJson {
        UNetJson {
            in_channels: self.latent_channels,
            out_channels: self.latent_channels,
            sample_size: self.image_size / self.downscale(),
            block_out_channels: self.unet_channels.clone(),
            down_block_types: vec!["CrossAttnDownBlock2D".into(); self.unet_channels.len()],
            layers_per_block: 1,
            attention_head_dim: PerBlock::One(self.unet_heads),
            cross_attention_dim: self.text_width,
            norm_num_groups: self.unet_groups,
            norm_eps: 1e-5,
            use_linear_projection: false,
            transformer_layers_per_block: None,
            addition_embed_type: None,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            center_input_sample: false,
        }
    }

    /// diffusers' `vae/config.json` (the scaling factor is fitted after training).
    pub fn vae_json(&self, scaling_factor: f64) -> VaeJson {
        VaeJson {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: self.vae_channels.clone(),
            layers_per_block: 1,
            latent_channels: self.latent_channels,
            norm_num_groups: self.vae_groups,
            scaling_factor,
            sample_size: Some(self.image_size),
            use_quant_conv: true,
            use_post_quant_conv: true,
        }
    }

    /// transformers' `text_encoder/config.json`.
    pub fn text_json(&self) -> TextEncoderJson {
        TextEncoderJson {
            vocab_size: 49408,
            hidden_size: self.text_width,
            intermediate_size: self.text_mlp,
            num_hidden_layers: self.text_layers,
            num_attention_heads: self.text_heads,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            projection_dim: Some(self.text_width),
            architectures: None,
        }
    }

    /// candle-transformers' UNet config.
    pub fn unet_candle(&self) -> UNet2DConditionModelConfig {
        // The JSON is built from valid sizes, so the conversion cannot fail.
        self.unet_json()
            .to_candle(Path::new("embedded"))
            .unwrap_or_default()
    }

    /// candle-transformers' VAE config.
    pub fn vae_candle(&self) -> AutoEncoderKLConfig {
        self.vae_json(1.0).to_candle()
    }

    /// candle-transformers' text encoder config.
    pub fn text_candle(&self) -> ClipTextConfig {
        self.text_json()
            .to_candle(Path::new("embedded"))
            .unwrap_or_else(|_| ClipTextConfig::vit_base_patch32())
    }
}

/// Least-squares fit of `rgb = W latent + b` over every latent cell.
///
/// `latents` is `[N, C, h, w]`, `pictures` the matching pictures averaged down to `[N, 3, h, w]`
/// in [-1, 1].
pub fn fit_latent_rgb(latents: &Tensor, pictures: &Tensor) -> Result<LatentRgb> {
    let c = latents.dim(1)?;
    // Rows: one per cell, features = latent channels and a constant 1.
    let x = latents
        .transpose(1, 3)?
        .flatten_to(2)?
        .to_dtype(candle_core::DType::F64)?;
    let y = pictures
        .transpose(1, 3)?
        .flatten_to(2)?
        .to_dtype(candle_core::DType::F64)?;
    let ones = Tensor::ones((x.dim(0)?, 1), candle_core::DType::F64, x.device())?;
    let x = Tensor::cat(&[&x, &ones], D::Minus1)?;
    let xtx = x.t()?.matmul(&x)?.to_vec2::<f64>()?;
    let xty = x.t()?.matmul(&y)?.to_vec2::<f64>()?;
    let solution = solve(xtx, xty).context("latent-to-RGB fit is singular")?;
    let weights = (0..c)
        .map(|i| [0, 1, 2].map(|k| solution[i][k] as f32))
        .collect();
    let bias = [0, 1, 2].map(|k| solution[c][k] as f32);
    Ok(LatentRgb { weights, bias })
}

/// Solves `a x = b` for a small dense system by Gauss-Jordan elimination with pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in 0..n {
            if row != col {
                let f = a[row][col] / a[col][col];
                let (pivot_a, pivot_b) = (a[col].clone(), b[col].clone());
                for (x, p) in a[row].iter_mut().zip(&pivot_a) {
                    *x -= f * p;
                }
                for (x, p) in b[row].iter_mut().zip(&pivot_b) {
                    *x -= f * p;
                }
            }
        }
    }
    Some(
        (0..n)
            .map(|i| b[i].iter().map(|v| v / a[i][i]).collect())
            .collect(),
    )
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn save_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    varmap.save(&tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Everything that goes into the model folder.
pub struct TrainedParts<'a> {
    /// UNet weights.
    pub unet: &'a VarMap,
    /// VAE weights.
    pub vae: &'a VarMap,
    /// Text encoder weights (names under `text_model.`).
    pub text_encoder: &'a VarMap,
    /// Fitted latent scaling.
    pub scaling_factor: f64,
    /// Fitted preview projection.
    pub latent_rgb: LatentRgb,
}

/// Writes the model folder in diffusers' layout; the tokenizer files are copied from
/// `tokenizer_dir` unless it already is the destination.
pub fn export(
    arch: &EmbeddedArchitecture,
    parts: &TrainedParts,
    tokenizer_dir: &Path,
    out: &Path,
) -> Result<()> {
    write_json(
        &out.join("model_index.json"),
        &json!({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.30.0",
            "_interconcept": "embedded Fashion-MNIST model, trained by `interconcept train`",
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
    )?;
    let mut unet = serde_json::to_value(arch.unet_json())?;
    unet["_class_name"] = json!("UNet2DConditionModel");
    unet["up_block_types"] = json!(vec!["CrossAttnUpBlock2D"; arch.unet_channels.len()]);
    write_json(&out.join("unet/config.json"), &unet)?;
    let mut vae = serde_json::to_value(arch.vae_json(parts.scaling_factor))?;
    vae["_class_name"] = json!("AutoencoderKL");
    vae["down_block_types"] = json!(vec!["DownEncoderBlock2D"; arch.vae_channels.len()]);
    vae["up_block_types"] = json!(vec!["UpDecoderBlock2D"; arch.vae_channels.len()]);
    write_json(&out.join("vae/config.json"), &vae)?;
    let mut text = serde_json::to_value(arch.text_json())?;
    text["architectures"] = json!(["CLIPTextModel"]);
    text["model_type"] = json!("clip_text_model");
    write_json(&out.join("text_encoder/config.json"), &text)?;
    let mut scheduler = serde_json::to_value(ScheduleConfig::default())?;
    scheduler["_class_name"] = json!("DDIMScheduler");
    scheduler["clip_sample"] = json!(false);
    scheduler["set_alpha_to_one"] = json!(false);
    if let Some(map) = scheduler.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    write_json(&out.join("scheduler/scheduler_config.json"), &scheduler)?;
    write_json(
        &out.join("interconcept.json"),
        &json!({
            "name": display_name(out),
            "latent_rgb": parts.latent_rgb,
            "concept_meter": crate::engine::scoring::FASHION_MNIST_METER,
        }),
    )?;

    save_weights(
        parts.unet,
        &out.join("unet/diffusion_pytorch_model.safetensors"),
    )?;
    save_weights(
        parts.vae,
        &out.join("vae/diffusion_pytorch_model.safetensors"),
    )?;
    save_weights(
        parts.text_encoder,
        &out.join("text_encoder/model.safetensors"),
    )?;

    let tokenizer_out = out.join("tokenizer");
    if tokenizer_dir != tokenizer_out {
        std::fs::create_dir_all(&tokenizer_out)?;
        for file in [
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            let from = tokenizer_dir.join(file);
            if from.is_file() {
                std::fs::copy(&from, tokenizer_out.join(file))
                    .with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
    }
    Ok(())
}

/// The model's display name: "fashion-mnist (embedded)" for the model that ships with the
/// program, the folder's name for any other.
fn display_name(out: &Path) -> String {
    let shipped = crate::engine::model::embedded_model_dir();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(out, &shipped) {
        "fashion-mnist (embedded)".to_string()
    } else {
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fashion-mnist".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn latent_rgb_fit_recovers_a_known_map() {
        let dev = Device::Cpu;
        let latents = crate::engine::noise::gaussian(3, (4, 4, 2, 2), &dev).unwrap();
        let w = Tensor::new(
            &[
                [0.5f32, 0.0, 0.1, 0.0],
                [0.0, -0.3, 0.0, 0.2],
                [0.1, 0.1, 0.1, 0.1],
            ],
            &dev,
        )
        .unwrap();
        let flat = latents
            .permute((0, 2, 3, 1))
            .unwrap()
            .reshape((16, 4))
            .unwrap();
        let rgb = (flat.matmul(&w.t().unwrap()).unwrap() + 0.25).unwrap();
        let pictures = rgb
            .reshape((4, 2, 2, 3))
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap();
        let fit = fit_latent_rgb(&latents, &pictures).unwrap();
        assert!((fit.weights[0][0] - 0.5).abs() < 1e-4, "{fit:?}");
        assert!((fit.weights[3][1] - 0.2).abs() < 1e-4, "{fit:?}");
        assert!((fit.bias[2] - 0.25).abs() < 1e-4, "{fit:?}");
    }
}
