//! Reading a model folder in diffusers' layout into [`ModelParts`].
//!
//! The layout: `model_index.json`, then one folder per component with its config and weights
//! (`unet/config.json` + `unet/diffusion_pytorch_model.safetensors`, `vae/` likewise,
//! `text_encoder/config.json` + `model.safetensors`, `tokenizer/`, `scheduler/`). The same
//! layout is what a Hugging Face cache snapshot holds and what the embedded model ships in.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::checkpoint::SafetensorsFile;
use super::config::{UNetJson, VaeJson, read_json};
use super::error::{EngineError, Result};
use super::model::{Component, ModelParts};
use super::preview::LatentRgb;
use super::scheduler::ScheduleConfig;
use super::text_encoder::TextEncoderJson;
use super::tokenizer::ClipTokenizer;
use super::variant::{ClassName, Variant, VariantClues, check_class};
use super::weights::WeightStore;

/// Optional extras that the program stores beside a diffusers model (`interconcept.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Extras {
    /// A display name; the folder name otherwise.
    name: Option<String>,
    latent_rgb: Option<LatentRgb>,
    /// The concept meter the model's pictures can be scored with (see `engine::scoring`).
    concept_meter: Option<String>,
}

/// A tensor's name as the engine knows it. transformers 5 saves `CLIPTextModel` without the
/// `text_model.` prefix that every earlier version (and every published checkpoint) has.
fn canonical_name(component: Component, name: &str) -> String {
    let bare_clip = ["embeddings.", "encoder.", "final_layer_norm."];
    if component == Component::TextEncoder && bare_clip.iter().any(|p| name.starts_with(p)) {
        format!("text_model.{name}")
    } else {
        name.to_string()
    }
}

/// The weight file of a component in a model folder.
pub fn component_weights_path(dir: &Path, component: Component) -> Result<PathBuf> {
    let stem = match component {
        Component::TextEncoder => "model",
        Component::Unet | Component::Vae => "diffusion_pytorch_model",
    };
    weight_file(&dir.join(component.name()), stem)
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
        return Err(super::source::pickle_refusal(&p));
    }
    Err(EngineError::file(
        format!("no {stem}.safetensors (or .fp16.safetensors) weights"),
        dir,
    ))
}

/// The name a folder goes by: `ORG/NAME` for a Hugging Face cache snapshot, else its name.
pub fn folder_name(dir: &Path) -> String {
    if let Some(repo) = super::hub::repo_of_snapshot(dir) {
        return repo;
    }
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// UNet config fields that add conditioning candle-transformers' UNet does not implement
/// (class labels, LCM's guidance embedding, image embeddings); a model that sets one is
/// refused rather than run without it.
const UNSUPPORTED_UNET_FIELDS: [&str; 4] = [
    "class_embed_type",
    "num_class_embeds",
    "time_cond_proj_dim",
    "encoder_hid_dim_type",
];

/// Refuses UNet configs that set any of [`UNSUPPORTED_UNET_FIELDS`].
fn check_unet_extras(config: &serde_json::Value, path: &Path) -> Result<()> {
    for field in UNSUPPORTED_UNET_FIELDS {
        if let Some(value) = config.get(field).filter(|v| !v.is_null()) {
            return Err(EngineError::file(
                format!(
                    "the UNet sets {field} = {value}, conditioning that candle-transformers' \
                     UNet does not implement"
                ),
                path,
            ));
        }
    }
    Ok(())
}

/// A diffusers folder's configs, checked, before any weight is read.
pub struct FolderConfigs {
    /// Which Stable Diffusion it is.
    pub variant: Variant,
    /// The UNet's config.
    pub unet: UNetJson,
    /// The VAE's config.
    pub vae: VaeJson,
    /// The text encoder's config.
    pub text_encoder: TextEncoderJson,
    /// The noise schedule.
    pub schedule: ScheduleConfig,
}

/// Reads and checks the configs of a diffusers folder: an unknown architecture, a variant this
/// build cannot run, or numbers candle's modules cannot take fail here, naming the file.
pub fn read_configs(dir: &Path) -> Result<FolderConfigs> {
    let unet_path = dir.join("unet/config.json");
    let vae_path = dir.join("vae/config.json");
    let text_path = dir.join("text_encoder/config.json");
    let index_path = dir.join("model_index.json");

    let pipeline: ClassName = if index_path.is_file() {
        read_json(&index_path)?
    } else {
        ClassName::default()
    };
    let unet: UNetJson = read_json(&unet_path)?;
    check_class(
        &read_json(&unet_path)?,
        &["UNet2DConditionModel"],
        &unet_path,
    )?;
    let schedule: ScheduleConfig = read_json(&dir.join("scheduler/scheduler_config.json"))?;
    let text_encoder: TextEncoderJson = read_json(&text_path)?;
    let variant = VariantClues {
        pipeline: pipeline.class_name.as_deref(),
        has_text_encoder_2: dir.join("text_encoder_2").is_dir(),
        addition_embed_type: unet.addition_embed_type.as_deref(),
        text_activation: &text_encoder.hidden_act,
        schedule: &schedule,
    }
    .variant(&index_path)?;
    variant.check_supported(&unet_path)?;
    check_unet_extras(&read_json(&unet_path)?, &unet_path)?;
    check_class(&read_json(&vae_path)?, &["AutoencoderKL"], &vae_path)?;
    let vae: VaeJson = read_json(&vae_path)?;
    text_encoder.validate(&text_path)?;
    unet.to_candle(&unet_path)?;
    Ok(FolderConfigs {
        variant,
        unet,
        vae,
        text_encoder,
        schedule,
    })
}

/// Reads a diffusers folder: configs first (so a bad config fails before gigabytes are read),
/// then each component's weights, hashed in component order.
pub fn read(dir: &Path, dtype: DType, device: &Device) -> Result<ModelParts> {
    let FolderConfigs {
        variant,
        unet,
        vae,
        text_encoder,
        schedule,
    } = read_configs(dir)?;
    let extras: Extras = match dir.join("interconcept.json") {
        p if p.is_file() => read_json(&p)?,
        _ => Extras::default(),
    };
    let tokenizer = ClipTokenizer::from_dir(&dir.join("tokenizer"))
        .map_err(|e| EngineError::file(e.to_string(), dir.join("tokenizer")))?;

    let mut hasher = blake3::Hasher::new();
    let mut load = |component: Component, stem: &str| -> Result<WeightStore> {
        let path = weight_file(&dir.join(component.name()), stem)?;
        let file = SafetensorsFile::open(&path)?;
        let tensors = file.read(
            &mut |n| Some(canonical_name(component, n)),
            dtype,
            device,
            &mut hasher,
        )?;
        WeightStore::from_tensors(component.name(), &path, tensors, dtype)
    };
    let text_store = load(Component::TextEncoder, "model")?;
    let unet_store = load(Component::Unet, "diffusion_pytorch_model")?;
    let vae_store = load(Component::Vae, "diffusion_pytorch_model")?;

    Ok(ModelParts {
        name: extras.name.unwrap_or_else(|| folder_name(dir)),
        source: dir.to_path_buf(),
        variant,
        unet,
        unet_path: dir.join("unet/config.json"),
        vae,
        text_encoder,
        text_encoder_path: dir.join("text_encoder/config.json"),
        schedule,
        tokenizer,
        latent_rgb: extras.latent_rgb,
        concept_meter: extras.concept_meter,
        stores: [text_store, unet_store, vae_store],
        weights_hash: hasher.finalize().to_hex()[..32].to_string(),
    })
}
