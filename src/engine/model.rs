//! A Stable Diffusion model in memory: its tokenizer, text encoder, UNet, VAE and schedule.
//!
//! Models are folders in diffusers' layout (`model_index.json`, `unet/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`); the embedded model ships in that same layout
//! under `assets/model`. The modules are candle-transformers' own, built over
//! [`WeightStore`]s so that weight edits take effect without reloading.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::clip::text_model::ClipTextTransformer;
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use serde::{Deserialize, Serialize};

use super::config::{TextEncoderJson, UNetJson, VaeJson, read_json};
use super::error::{CandleContext, EngineError, Result};
use super::preview::LatentRgb;
use super::scheduler::ScheduleConfig;
use super::tokenizer::ClipTokenizer;
use super::weights::WeightStore;

/// The folder of the model that ships with the program.
pub fn embedded_model_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/model"))
}

/// UNets with fewer weights than this are run eight images per call.
const SMALL_UNET_VALUES: usize = 20_000_000;

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
}

/// Optional extras that the program stores beside a diffusers model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Extras {
    /// A display name; the folder name otherwise.
    name: Option<String>,
    latent_rgb: Option<LatentRgb>,
}

/// A loaded diffusion model.
pub struct DiffusionModel {
    /// Identity for recipes.
    pub id: ModelId,
    /// Folder it was read from.
    pub dir: PathBuf,
    /// The prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The text encoder.
    pub text_encoder: ClipTextTransformer,
    /// The denoiser.
    pub unet: UNet2DConditionModel,
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
    /// Images per UNet call: every call uses exactly this many (see `pipeline::predict`), many
    /// for small models where batching pays, one for large ones.
    pub unet_batch: usize,
    /// The latent side must be a multiple of this (the UNet halves it once per level).
    pub size_multiple: usize,
    /// Width of the conditioning (the text encoder's hidden size).
    pub conditioning_dim: usize,
    /// Projection of latents to RGB for previews.
    pub latent_rgb: LatentRgb,
    /// The editable weights of the text encoder, UNet and VAE.
    pub stores: Vec<(Component, WeightStore)>,
    /// Where tensors live.
    pub device: Device,
}

/// Finds a component's weight file, preferring full precision over the fp16 variant.
fn weight_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ] {
        let path = dir.join(&name);
        if path.is_file() {
            return Ok(path);
        }
    }
    let pickled = [format!("{stem}.bin"), format!("{stem}.ckpt")];
    if let Some(p) = pickled.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Err(EngineError::file(
            "only safetensors weights are loaded: pickled checkpoints can run code when opened; \
             convert it with diffusers or safetensors' convert script first",
            p,
        ));
    }
    Err(EngineError::file(
        format!("no {stem}.safetensors (or .fp16.safetensors) weights"),
        dir,
    ))
}

impl DiffusionModel {
    /// Loads a model folder in the diffusers layout.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let _span = tracing::info_span!("load model", dir = %dir.display()).entered();
        if !dir.is_dir() {
            return Err(EngineError::file("model folder not found", dir));
        }
        let dtype = DType::F32;
        let mut hasher = blake3::Hasher::new();

        // Configs first, so a bad config fails before gigabytes are read.
        let unet_json: UNetJson = read_json(&dir.join("unet/config.json"))?;
        let unet_cfg = unet_json.to_candle(&dir.join("unet/config.json"))?;
        let vae_json: VaeJson = read_json(&dir.join("vae/config.json"))?;
        let text_json: TextEncoderJson = read_json(&dir.join("text_encoder/config.json"))?;
        let text_cfg = text_json.to_candle(&dir.join("text_encoder/config.json"))?;
        let schedule: ScheduleConfig = read_json(&dir.join("scheduler/scheduler_config.json"))?;
        let extras: Extras = match dir.join("interconcept.json") {
            p if p.is_file() => read_json(&p)?,
            _ => Extras::default(),
        };
        if unet_json.cross_attention_dim != text_json.hidden_size {
            return Err(EngineError::file(
                format!(
                    "UNet cross_attention_dim {} differs from the text encoder's hidden_size {}",
                    unet_json.cross_attention_dim, text_json.hidden_size
                ),
                dir.join("unet/config.json"),
            ));
        }
        let tokenizer = ClipTokenizer::from_dir(&dir.join("tokenizer"))
            .map_err(|e| EngineError::file(e.to_string(), dir.join("tokenizer")))?;

        // Each component: read (and hash) its weights, then build candle's module over them.
        let mut load = |component: Component, stem: &str| -> Result<WeightStore> {
            let path = weight_file(&dir.join(component.name()), stem)?;
            let bytes = std::fs::read(&path)
                .map_err(|e| EngineError::file(format!("cannot read weights: {e}"), &path))?;
            hasher.update(&bytes);
            WeightStore::from_safetensors_bytes(component.name(), &path, &bytes, dtype, device)
        };
        let text_store = load(Component::TextEncoder, "model")?;
        let unet_store = load(Component::Unet, "diffusion_pytorch_model")?;
        let vae_store = load(Component::Vae, "diffusion_pytorch_model")?;

        let text_encoder = ClipTextTransformer::new(
            text_store.var_builder(dtype, device).pp("text_model"),
            &text_cfg,
        )
        .stage("build text encoder")?;
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

        let name = extras.name.clone().unwrap_or_else(|| {
            dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        });
        let hash = hasher.finalize();
        let latent_rgb = extras
            .latent_rgb
            .unwrap_or_else(|| LatentRgb::for_channels(vae_json.latent_channels));
        tracing::info!(model = %name, "model loaded");
        Ok(Self {
            id: ModelId {
                name,
                weights_hash: hash.to_hex()[..32].to_string(),
            },
            dir: dir.to_path_buf(),
            tokenizer,
            text_encoder,
            unet,
            vae,
            schedule,
            vae_scaling_factor: vae_json.scaling_factor,
            latent_channels: vae_json.latent_channels,
            vae_downscale: vae_json.downscale(),
            default_size: unet_json.sample_size * vae_json.downscale(),
            unet_batch: if unet_store.num_values() < SMALL_UNET_VALUES {
                8
            } else {
                1
            },
            size_multiple: 1 << (unet_json.block_out_channels.len() - 1),
            conditioning_dim: text_json.hidden_size,
            latent_rgb,
            stores: vec![
                (Component::TextEncoder, text_store),
                (Component::Unet, unet_store),
                (Component::Vae, vae_store),
            ],
            device: device.clone(),
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
        let conditioning = self
            .text_encoder
            .forward_with_mask(&ids, usize::MAX)
            .stage("encode")?;
        Ok((conditioning, cut))
    }
}
