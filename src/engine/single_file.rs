//! Reading a single-file checkpoint in the original Stable Diffusion (LDM) layout.
//!
//! Such a file holds the UNet, VAE and text encoder under their LDM names and no configs. The
//! configs start from SD 1.5's (or SD 2.1's, when the text encoder is OpenCLIP's) and take every
//! number the tensors themselves show: levels, channels, resnets per level, attention, latent
//! channels, text width and depth. What no tensor shows is fixed by the family: 32 groups in
//! group norms, 8 attention heads in 1.x and 64-wide heads in 2.x, 64-wide text heads. The
//! prediction type of a 2.x file cannot be read from its tensors; A1111 keeps a `NAME.yaml` with
//! `parameterization: "v"` beside such files, and this reader looks there, else assumes SD 2.1's
//! v-prediction. The tokenizer is the embedded model's (the CLIP vocabulary, which every Stable
//! Diffusion 1.x and 2.x shares), padding with `!` for 2.x.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

mod infer;

use infer::{Shapes, text_config, unet_config, vae_config};

use super::checkpoint::SafetensorsFile;
use super::error::{EngineError, Result};
use super::ldm_keys::{
    self, CLIP_PREFIX, KeyMap, OPEN_CLIP_PREFIX, SDXL_CONDITIONER_PREFIX, UNET_PREFIX,
};
use super::model::{Component, ModelParts, embedded_model_dir};
use super::scheduler::{PredictionType, ScheduleConfig};
use super::tokenizer::ClipTokenizer;
use super::variant::{Variant, default_prediction};
use super::weights::WeightStore;

/// Reads a single-file checkpoint; the caller has checked that it is a `.safetensors` file.
pub fn read(path: &Path, dtype: DType, device: &Device) -> Result<ModelParts> {
    let file = SafetensorsFile::open(path)?;
    let shapes = Shapes {
        shapes: file
            .entries()
            .iter()
            .map(|e| (e.name.as_str(), e.shape.as_slice()))
            .collect(),
        path,
    };

    // Which family, from the key layout.
    if shapes.has_prefix(SDXL_CONDITIONER_PREFIX) {
        Variant::Sdxl.check_supported(path)?;
    }
    if !shapes.has_prefix(UNET_PREFIX) {
        let hint = if shapes.has_prefix("down_blocks.") || shapes.has_prefix("text_model.") {
            "; it looks like one component of a diffusers folder: pass the folder instead"
        } else {
            ""
        };
        return Err(EngineError::file(
            format!("not a Stable Diffusion checkpoint: no {UNET_PREFIX}* tensors{hint}"),
            path,
        ));
    }
    let label_emb = format!("{UNET_PREFIX}label_emb.");
    if shapes.has_prefix(&label_emb) {
        return Err(EngineError::file(
            format!(
                "the UNet is class-conditioned ({label_emb}* tensors: an upscaler or unCLIP \
                 model), which candle-transformers' UNet does not implement"
            ),
            path,
        ));
    }
    let open_clip = shapes.has_prefix(OPEN_CLIP_PREFIX);
    if !open_clip && !shapes.has_prefix(CLIP_PREFIX) {
        return Err(EngineError::file(
            format!("no text encoder: neither {CLIP_PREFIX}* nor {OPEN_CLIP_PREFIX}* tensors"),
            path,
        ));
    }
    let variant = if open_clip {
        Variant::Sd21
    } else {
        Variant::Sd15
    };
    let prediction = sidecar_prediction(path).unwrap_or_else(|| default_prediction(variant));

    let (layout, unet) = unet_config(&shapes, variant, prediction)?;
    let vae = vae_config(&shapes)?;
    let (text_encoder, text_map) = text_config(&shapes, open_clip)?;
    let maps = [
        (Component::TextEncoder, text_map),
        (Component::Unet, ldm_keys::unet_map(&layout)),
        (
            Component::Vae,
            ldm_keys::vae_map(vae.block_out_channels.len(), vae.layers_per_block),
        ),
    ];

    // One pass over the file: every tensor hashed, the mapped ones kept under
    // "component/diffusers.name".
    let mut hasher = blake3::Hasher::new();
    let mut keep = |name: &str| {
        maps.iter().find_map(|(component, map)| {
            map.to_diffusers(name)
                .map(|n| format!("{}/{n}", component.name()))
        })
    };
    let tensors = file.read(&mut keep, dtype, device, &mut hasher)?;
    let mut by_component: [HashMap<String, Tensor>; 3] = Default::default();
    for (key, tensor) in tensors {
        let Some((component, name)) = key.split_once('/') else {
            continue;
        };
        let index = Component::ALL
            .iter()
            .position(|c| c.name() == component)
            .unwrap_or(0);
        by_component[index].insert(name.to_string(), tensor);
    }
    let [text_tensors, unet_tensors, vae_tensors] = by_component;
    let text_tensors = split_fused(text_tensors, path)?;
    let vae_tensors = squeeze_attention_convs(vae_tensors, path)?;

    let [(_, text_map), (_, unet_map), (_, vae_map)] = maps;
    let store = |component: Component, tensors, map: KeyMap| -> Result<WeightStore> {
        let names = Arc::new(move |n: &str| map.to_checkpoint(n));
        Ok(
            WeightStore::from_tensors(component.name(), path, tensors, dtype)?
                .with_checkpoint_names(names),
        )
    };
    let stores = [
        store(Component::TextEncoder, text_tensors, text_map)?,
        store(Component::Unet, unet_tensors, unet_map)?,
        store(Component::Vae, vae_tensors, vae_map)?,
    ];

    let tokenizer_dir = embedded_model_dir().join("tokenizer");
    let mut tokenizer = ClipTokenizer::from_dir(&tokenizer_dir)
        .map_err(|e| EngineError::file(e.to_string(), &tokenizer_dir))?;
    if open_clip {
        tokenizer = tokenizer.with_pad_token("!").ok_or_else(|| {
            EngineError::file("pad token \"!\" is not in the vocabulary", &tokenizer_dir)
        })?;
    }
    let schedule = ScheduleConfig {
        prediction_type: prediction,
        ..ScheduleConfig::default()
    };
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    Ok(ModelParts {
        name,
        source: path.to_path_buf(),
        variant,
        unet,
        unet_path: path.to_path_buf(),
        vae,
        text_encoder,
        text_encoder_path: path.to_path_buf(),
        schedule,
        tokenizer,
        latent_rgb: None,
        concept_meter: None,
        stores,
        weights_hash: hasher.finalize().to_hex()[..32].to_string(),
    })
}

/// The prediction type an A1111-style `NAME.yaml` beside the checkpoint names, if there is one.
fn sidecar_prediction(path: &Path) -> Option<PredictionType> {
    let text = std::fs::read_to_string(path.with_extension("yaml")).ok()?;
    let v = text.lines().any(|line| {
        line.trim()
            .strip_prefix("parameterization:")
            .is_some_and(|value| value.trim().trim_matches(['"', '\'']) == "v")
    });
    Some(if v {
        PredictionType::VPrediction
    } else {
        PredictionType::Epsilon
    })
}

/// Splits OpenCLIP's fused `in_proj` tensors into transformers' `q_proj`, `k_proj`, `v_proj`.
fn split_fused(
    mut tensors: HashMap<String, Tensor>,
    path: &Path,
) -> Result<HashMap<String, Tensor>> {
    let fused: Vec<String> = tensors
        .keys()
        .filter(|k| ldm_keys::split_fused_qkv(k).is_some())
        .cloned()
        .collect();
    for name in fused {
        let (Some(tensor), Some(parts)) = (tensors.remove(&name), ldm_keys::split_fused_qkv(&name))
        else {
            continue;
        };
        let rows = tensor.dim(0).unwrap_or(0);
        if rows == 0 || rows % 3 != 0 {
            return Err(EngineError::file(
                format!("tensor {name} has {rows} rows, not three equal parts"),
                path,
            ));
        }
        for (i, part) in parts.into_iter().enumerate() {
            let piece = tensor
                .narrow(0, i * rows / 3, rows / 3)
                .and_then(|t| t.contiguous())
                .map_err(|e| EngineError::file(format!("tensor {name}: {e}"), path))?;
            tensors.insert(part, piece);
        }
    }
    Ok(tensors)
}

/// The VAE attention's 1x1 convolutions `[C, C, 1, 1]` as the linears `[C, C]` diffusers has.
fn squeeze_attention_convs(
    mut tensors: HashMap<String, Tensor>,
    path: &Path,
) -> Result<HashMap<String, Tensor>> {
    for (name, tensor) in tensors.iter_mut() {
        if name.contains("mid_block.attentions.0.") && tensor.rank() == 4 {
            let (o, i, h, w) = tensor.dims4().unwrap_or_default();
            if (h, w) != (1, 1) {
                return Err(EngineError::TensorShape {
                    name: name.clone(),
                    found: tensor.dims().to_vec(),
                    expected: vec![o, i, 1, 1],
                    path: path.to_path_buf(),
                });
            }
            *tensor = tensor
                .reshape((o, i))
                .map_err(|e| EngineError::file(format!("tensor {name}: {e}"), path))?;
        }
    }
    Ok(tensors)
}
