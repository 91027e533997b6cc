//! A Stable Diffusion model in memory: its tokenizer, text encoder, UNet, VAE and schedule.
//!
//! Models are read from folders in diffusers' layout (`model_index.json`, `unet/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`; see `diffusers.rs`), which is also how the
//! embedded model ships under `assets/model`, or from single-file checkpoints in the original
//! Stable Diffusion layout (see `single_file.rs`). Either way they become [`ModelParts`], and
//! the modules are built over [`WeightStore`]s so that weight edits take effect without
//! reloading: candle-transformers' UNet and VAE, and the text encoder of `text_encoder.rs`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use serde::{Deserialize, Serialize};

use super::config::{UNetJson, VaeJson};
use super::cpu_unet::{CpuDecoder, CpuUNet};
use super::error::{CandleContext, EngineError, Result};
use super::preview::LatentRgb;
use super::scheduler::ScheduleConfig;
use super::text_encoder::{TextEncoder, TextEncoderJson};
use super::tokenizer::ClipTokenizer;
use super::vae_tiling::Tiling;
use super::variant::Variant;
use super::weights::WeightStore;

/// The folder of the model that ships with the program.
pub fn embedded_model_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/model"))
}

/// Which editable part of a model a weight belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// The CLIP text encoder.
    TextEncoder,
    /// The denoising UNet.
    Unet,
    /// The autoencoder.
    Vae,
}

impl Component {
    /// All components, in pipeline order.
    pub const ALL: [Component; 3] = [Component::TextEncoder, Component::Unet, Component::Vae];

    /// The component of a folder name (`text_encoder`, `unet`, `vae`).
    pub fn parse(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The component's folder name in the diffusers layout.
    pub fn name(self) -> &'static str {
        match self {
            Component::TextEncoder => "text_encoder",
            Component::Unet => "unet",
            Component::Vae => "vae",
        }
    }
}

/// What identifies a model in a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelId {
    /// A human name: the folder name, or the hub id.
    pub name: String,
    /// BLAKE3 of the weight files, in component order (hex, first 16 bytes).
    pub weights_hash: String,
    /// Which Stable Diffusion it is; absent in recipes written before variants were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Variant>,
}

/// A loaded diffusion model.
pub struct DiffusionModel {
    /// Identity for recipes.
    pub id: ModelId,
    /// Folder or file it was read from.
    pub dir: PathBuf,
    /// Which Stable Diffusion it is.
    pub variant: Variant,
    /// The prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The text encoder.
    pub text_encoder: TextEncoder,
    /// The denoiser.
    pub unet: UNet2DConditionModel,
    /// The same denoiser computed without candle, on the CPU (see `cpu_unet`, which says which
    /// UNets and sizes it takes); `None` off the CPU or for configs it does not follow.
    pub cpu_unet: Option<CpuUNet>,
    /// The VAE's decoder computed without candle, on the CPU (`cpu_unet::CpuDecoder`);
    /// `None` off the CPU or with `INTERCONCEPT_VAE=candle`.
    pub cpu_decoder: Option<CpuDecoder>,
    /// The autoencoder.
    pub vae: AutoEncoderKL,
    /// The noise schedule the UNet was trained with.
    pub schedule: ScheduleConfig,
    /// Latent scaling between the VAE and the UNet.
    pub vae_scaling_factor: f64,
    /// Channels of the latent.
    pub latent_channels: usize,
    /// Pixels per latent cell along a side.
    pub vae_downscale: usize,
    /// The image side the model was trained at.
    pub default_size: usize,
    /// Images per UNet call (twice that with guidance) off the CPU: every call there uses
    /// exactly this many (see `pipeline::predict`), so that a picture in a batch equals the
    /// picture made alone. On the CPU every call holds one image's branch.
    pub unet_batch: usize,
    /// The latent side must be a multiple of this (the UNet halves it once per level).
    pub size_multiple: usize,
    /// Width of the conditioning (the text encoder's hidden size).
    pub conditioning_dim: usize,
    /// Projection of latents to RGB for previews.
    pub latent_rgb: LatentRgb,
    /// Latents larger than one tile are decoded in tiles (see `vae_tiling`).
    pub vae_tiling: Tiling,
    /// The editable weights of the text encoder, UNet and VAE.
    pub stores: Vec<(Component, WeightStore)>,
    /// Where tensors live.
    pub device: Device,
    /// The concept meter the model declares (see [`super::scoring`]).
    pub concept_meter: Option<String>,
    /// A TAESD decoder for sharp previews, when the model has a `taesd` folder.
    pub taesd: Option<super::taesd::TinyDecoder>,
}

/// Everything a model is made of, read from disk, before candle's modules are built over it.
///
/// Each layout (a diffusers folder, a single-file checkpoint) has its own reader that fills
/// this in; [`DiffusionModel::from_parts`] then builds the same model from either.
pub struct ModelParts {
    /// A human name.
    pub name: String,
    /// The folder or file it was read from.
    pub source: PathBuf,
    /// Which Stable Diffusion it is.
    pub variant: Variant,
    /// The UNet's config.
    pub unet: UNetJson,
    /// Where the UNet's config came from, for messages.
    pub unet_path: PathBuf,
    /// The VAE's config.
    pub vae: VaeJson,
    /// The text encoder's config.
    pub text_encoder: TextEncoderJson,
    /// Where the text encoder's config came from, for messages.
    pub text_encoder_path: PathBuf,
    /// The noise schedule.
    pub schedule: ScheduleConfig,
    /// The prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// A latent-to-RGB projection for previews, if the model ships one.
    pub latent_rgb: Option<LatentRgb>,
    /// The concept meter the model declares, if any.
    pub concept_meter: Option<String>,
    /// The weights of the text encoder, UNet and VAE, in [`Component::ALL`] order.
    pub stores: [WeightStore; 3],
    /// BLAKE3 of the weight files (hex, first 16 bytes).
    pub weights_hash: String,
}

/// The TAESD decoder in the `taesd` folder of a model folder (or beside a single file), if any;
/// one that does not load is reported and left out, since previews are an extra.
fn load_taesd(path: &Path, device: &Device) -> Option<super::taesd::TinyDecoder> {
    let dir = if path.is_dir() {
        path.join("taesd")
    } else {
        path.parent()?.join("taesd")
    };
    if !dir.is_dir() {
        return None;
    }
    match super::taesd::TinyDecoder::load(&dir, device) {
        Ok(decoder) => {
            tracing::info!(dir = %dir.display(), "TAESD previews");
            Some(decoder)
        }
        Err(error) => {
            tracing::warn!("TAESD in {} not used: {error}", dir.display());
            None
        }
    }
}

impl DiffusionModel {
    /// Loads a model: a folder in the diffusers layout, or a single `.safetensors` checkpoint in
    /// the original Stable Diffusion (LDM) layout. Pickled checkpoints are refused unopened.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let _span = tracing::info_span!("load model", path = %path.display()).entered();
        let dtype = DType::F32;
        let parts = if path.is_dir() {
            super::diffusers::read(path, dtype, device)?
        } else if path.is_file() {
            super::source::check_single_file(path)?;
            super::single_file::read(path, dtype, device)?
        } else {
            return Err(EngineError::file("model folder or file not found", path));
        };
        let mut model = Self::from_parts(parts, device)?;
        model.taesd = load_taesd(path, device).filter(|taesd| {
            let fits = taesd.downscale == model.vae_downscale;
            if !fits {
                tracing::warn!(
                    "TAESD upsamples {}x but the VAE {}x; previews stay projections",
                    taesd.downscale,
                    model.vae_downscale
                );
            }
            fits
        });
        Ok(model)
    }

    /// Builds candle's modules over the weights of `parts`.
    pub fn from_parts(parts: ModelParts, device: &Device) -> Result<Self> {
        let dtype = DType::F32;
        let ModelParts {
            name,
            source,
            variant,
            unet: unet_json,
            unet_path,
            vae: vae_json,
            text_encoder: text_json,
            text_encoder_path,
            schedule,
            tokenizer,
            latent_rgb,
            concept_meter,
            stores: [text_store, unet_store, vae_store],
            weights_hash,
        } = parts;
        variant.check_supported(&unet_path)?;
        if unet_json.cross_attention_dim != text_json.hidden_size {
            return Err(EngineError::file(
                format!(
                    "UNet cross_attention_dim {} differs from the text encoder's hidden_size {}",
                    unet_json.cross_attention_dim, text_json.hidden_size
                ),
                unet_path,
            ));
        }
        if unet_json.in_channels != vae_json.latent_channels
            || unet_json.out_channels != vae_json.latent_channels
        {
            return Err(EngineError::file(
                format!(
                    "the UNet takes {} channels and gives {}, but the VAE's latent has {}: \
                 inpainting and other image-conditioned UNets are not supported",
                    unet_json.in_channels, unet_json.out_channels, vae_json.latent_channels
                ),
                unet_path,
            ));
        }
        let unet_cfg = unet_json.to_candle(&unet_path)?;
        let text_encoder = TextEncoder::new(
            text_store.var_builder(dtype, device),
            &text_json,
            &text_encoder_path,
        )?;
        // INTERCONCEPT_UNET=candle keeps every call in candle's module, for comparisons.
        let candle_only = std::env::var("INTERCONCEPT_UNET").is_ok_and(|v| v == "candle");
        let small = unet_store.num_values() <= super::cpu_unet::MAX_WEIGHTS;
        let cpu_unet = if device.is_cpu() && small && !candle_only {
            CpuUNet::new(&unet_cfg, unet_json.out_channels)
        } else {
            None
        };
        // INTERCONCEPT_VAE=candle does the same for the decoder.
        let candle_vae = std::env::var("INTERCONCEPT_VAE").is_ok_and(|v| v == "candle");
        let cpu_decoder = if device.is_cpu() && !candle_vae {
            CpuDecoder::new(&vae_json)
        } else {
            None
        };
        let unet = UNet2DConditionModel::new(
            unet_store.var_builder(dtype, device),
            unet_json.in_channels,
            unet_json.out_channels,
            false,
            unet_cfg,
        )
        .stage("build unet")?;
        let vae = AutoEncoderKL::new(
            vae_store.var_builder(dtype, device),
            vae_json.in_channels,
            vae_json.out_channels,
            vae_json.to_candle(),
        )
        .stage("build vae")?;

        let latent_rgb =
            latent_rgb.unwrap_or_else(|| LatentRgb::for_channels(vae_json.latent_channels));
        tracing::info!(model = %name, variant = %variant, "model loaded");
        Ok(Self {
            id: ModelId {
                name,
                weights_hash,
                variant: Some(variant),
            },
            dir: source,
            variant,
            tokenizer,
            text_encoder,
            unet,
            cpu_unet,
            cpu_decoder,
            vae,
            schedule,
            vae_scaling_factor: vae_json.scaling_factor,
            latent_channels: vae_json.latent_channels,
            vae_downscale: vae_json.downscale(),
            default_size: unet_json.sample_size * vae_json.downscale(),
            // Off the CPU (the CPU always runs single branches, see `pipeline::predict`): one
            // image per call keeps a lone picture from paying for padding.
            unet_batch: 1,
            size_multiple: 1 << (unet_json.block_out_channels.len() - 1),
            conditioning_dim: text_json.hidden_size,
            latent_rgb,
            vae_tiling: Tiling::for_device(device, vae_json.downscale()),
            stores: vec![
                (Component::TextEncoder, text_store),
                (Component::Unet, unet_store),
                (Component::Vae, vae_store),
            ],
            device: device.clone(),
            concept_meter,
            taesd: None,
        })
    }

    /// The weights of one component.
    pub fn store(&self, component: Component) -> &WeightStore {
        // Every model has all three components: `load` pushes them in `Component::ALL` order.
        &self.stores[component as usize].1
    }

    /// The weights of one component, for editing.
    pub fn store_mut(&mut self, component: Component) -> &mut WeightStore {
        &mut self.stores[component as usize].1
    }

    /// Encodes prompts into conditioning, `[batch, 77, conditioning_dim]`.
    ///
    /// Returns the conditioning and, per prompt, the text cut off by truncation, if any.
    pub fn encode_prompts(&self, prompts: &[&str]) -> Result<(Tensor, Vec<Option<String>>)> {
        let _span = tracing::debug_span!("encode").entered();
        let mut ids = Vec::with_capacity(prompts.len());
        let mut cut = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let tokens = self
                .tokenizer
                .encode(prompt)
                .map_err(|e| EngineError::InvalidRequest(format!("cannot tokenize prompt: {e}")))?;
            ids.extend(tokens.ids);
            cut.push(tokens.truncated);
        }
        let len = self.tokenizer.max_len();
        let ids = Tensor::from_vec(ids, (prompts.len(), len), &self.device).stage("encode")?;
        let conditioning = self.text_encoder.forward(&ids).stage("encode")?;
        Ok((conditioning, cut))
    }
}
