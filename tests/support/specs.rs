//! The numbers and config files of the fixtures: real Stable Diffusion 1.5 and 2.1 configs
//! (`runwayml/stable-diffusion-v1-5`, `stabilityai/stable-diffusion-2-1`) at narrower widths.

use candle_core::DType;
use interconcept::engine::ldm_keys::UNetLayout;
use serde_json::{Value, json};

/// Which Stable Diffusion a fixture imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// SD 1.5: CLIP ViT-L text encoder, quick GELU, epsilon, 8 heads.
    Sd15,
    /// SD 2.1: OpenCLIP ViT-H text encoder, GELU, v-prediction, 64-wide heads.
    Sd21,
}

/// The numbers of a fixture.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The family.
    pub family: Family,
    /// UNet channels per level.
    pub unet_channels: Vec<usize>,
    /// Resnets per level, in the UNet and the VAE (2 in the real models).
    pub layers_per_block: usize,
    /// VAE channels per level.
    pub vae_channels: Vec<usize>,
    /// Text encoder width.
    pub text_width: usize,
    /// Text encoder layers (in the diffusers folder; OpenCLIP files hold one more).
    pub text_layers: usize,
    /// Element type on disk.
    pub dtype: DType,
}

impl Spec {
    /// A narrow SD 1.5.
    pub fn sd15() -> Self {
        Self {
            family: Family::Sd15,
            unet_channels: vec![32, 64, 64, 64],
            layers_per_block: 2,
            vae_channels: vec![32, 32, 64, 64],
            text_width: 64,
            text_layers: 2,
            dtype: DType::F32,
        }
    }

    /// A narrow SD 2.1.
    pub fn sd21() -> Self {
        Self {
            family: Family::Sd21,
            ..Self::sd15()
        }
    }

    /// Full-size widths and depths (for names and shapes only: gigabytes otherwise).
    pub fn full_size(family: Family) -> Self {
        let (text_width, text_layers) = match family {
            Family::Sd15 => (768, 12),
            Family::Sd21 => (1024, 23),
        };
        Self {
            family,
            unet_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            vae_channels: vec![128, 256, 512, 512],
            text_width,
            text_layers,
            dtype: DType::F32,
        }
    }

    /// Attention heads per UNet level: 8 in 1.x; 64-wide heads in 2.x.
    fn heads(&self) -> Vec<usize> {
        match self.family {
            Family::Sd15 => vec![8; self.unet_channels.len()],
            Family::Sd21 => self.unet_channels.iter().map(|c| (c / 64).max(1)).collect(),
        }
    }

    fn down_blocks(&self) -> Vec<&'static str> {
        let n = self.unet_channels.len();
        (0..n)
            .map(|i| {
                if i + 1 < n {
                    "CrossAttnDownBlock2D"
                } else {
                    "DownBlock2D"
                }
            })
            .collect()
    }

    /// `unet/config.json`.
    pub fn unet_config(&self) -> Value {
        let up: Vec<&str> = self
            .down_blocks()
            .iter()
            .rev()
            .map(|d| {
                if d.starts_with("CrossAttn") {
                    "CrossAttnUpBlock2D"
                } else {
                    "UpBlock2D"
                }
            })
            .collect();
        let mut c = json!({
            "_class_name": "UNet2DConditionModel",
            "_diffusers_version": "0.6.0",
            "act_fn": "silu",
            "attention_head_dim": 8,
            "block_out_channels": self.unet_channels,
            "center_input_sample": false,
            "cross_attention_dim": self.text_width,
            "down_block_types": self.down_blocks(),
            "downsample_padding": 1,
            "flip_sin_to_cos": true,
            "freq_shift": 0,
            "in_channels": 4,
            "layers_per_block": self.layers_per_block,
            "mid_block_scale_factor": 1,
            "norm_eps": 1e-05,
            "norm_num_groups": 32,
            "out_channels": 4,
            "sample_size": 64,
            "up_block_types": up
        });
        if self.family == Family::Sd21 {
            c["attention_head_dim"] = json!(self.heads());
            c["dual_cross_attention"] = json!(false);
            c["use_linear_projection"] = json!(true);
            c["upcast_attention"] = json!(true);
            c["num_class_embeds"] = Value::Null;
            c["sample_size"] = json!(96);
        }
        c
    }

    /// `vae/config.json`.
    pub fn vae_config(&self) -> Value {
        let n = self.vae_channels.len();
        json!({
            "_class_name": "AutoencoderKL",
            "_diffusers_version": "0.6.0",
            "act_fn": "silu",
            "block_out_channels": self.vae_channels,
            "down_block_types": vec!["DownEncoderBlock2D"; n],
            "in_channels": 3,
            "latent_channels": 4,
            "layers_per_block": self.layers_per_block,
            "norm_num_groups": 32,
            "out_channels": 3,
            "sample_size": 512,
            "up_block_types": vec!["UpDecoderBlock2D"; n]
        })
    }

    /// `text_encoder/config.json`.
    pub fn text_config(&self) -> Value {
        let (act, name, projection) = match self.family {
            Family::Sd15 => (
                "quick_gelu",
                "openai/clip-vit-large-patch14",
                self.text_width,
            ),
            Family::Sd21 => ("gelu", "hf-models/stable-diffusion-v2-768x768", 512),
        };
        json!({
            "_name_or_path": name,
            "architectures": ["CLIPTextModel"],
            "attention_dropout": 0.0,
            "bos_token_id": 0,
            "dropout": 0.0,
            "eos_token_id": 2,
            "hidden_act": act,
            "hidden_size": self.text_width,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": 4 * self.text_width,
            "layer_norm_eps": 1e-05,
            "max_position_embeddings": 77,
            "model_type": "clip_text_model",
            "num_attention_heads": (self.text_width / 64).max(1),
            "num_hidden_layers": self.text_layers,
            "pad_token_id": 1,
            "projection_dim": projection,
            "torch_dtype": "float32",
            "transformers_version": "4.25.0.dev0",
            "vocab_size": 49408
        })
    }

    /// `scheduler/scheduler_config.json`.
    pub fn scheduler_config(&self) -> Value {
        let mut c = json!({
            "_class_name": "PNDMScheduler",
            "_diffusers_version": "0.6.0",
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "num_train_timesteps": 1000,
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": 1,
            "trained_betas": null,
            "clip_sample": false
        });
        if self.family == Family::Sd21 {
            c["_class_name"] = json!("DDIMScheduler");
            c["prediction_type"] = json!("v_prediction");
        }
        c
    }

    /// `model_index.json`.
    pub fn model_index(&self) -> Value {
        json!({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.6.0",
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", self.scheduler_config()["_class_name"]],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]
        })
    }

    /// The UNet's levels, for the LDM names.
    pub fn unet_layout(&self) -> UNetLayout {
        UNetLayout {
            layers_per_block: self.layers_per_block,
            attention: self
                .down_blocks()
                .iter()
                .map(|d| d.starts_with("CrossAttn"))
                .collect(),
        }
    }
}
