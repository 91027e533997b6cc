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

use super::checkpoint::SafetensorsFile;
use super::config::{PerBlock, UNetJson, VaeJson};
use super::error::{EngineError, Result};
use super::ldm_keys::{
    self, CLIP_PREFIX, KeyMap, OPEN_CLIP_PREFIX, SDXL_CONDITIONER_PREFIX, UNET_PREFIX, UNetLayout,
    VAE_PREFIX,
};
use super::model::{Component, ModelParts, embedded_model_dir};
use super::scheduler::{PredictionType, ScheduleConfig};
use super::text_encoder::TextEncoderJson;
use super::tokenizer::ClipTokenizer;
use super::variant::{Variant, default_prediction};
use super::weights::WeightStore;

/// The tensors' shapes, for reading configs off them.
struct Shapes<'a> {
    shapes: HashMap<&'a str, &'a [usize]>,
    path: &'a Path,
}

impl Shapes<'_> {
    fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.shapes.keys().any(|k| k.starts_with(prefix))
    }

    /// Dimension `i` of a tensor that must be there.
    fn dim(&self, name: &str, i: usize) -> Result<usize> {
        let shape = self
            .shapes
            .get(name)
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.to_string(),
                path: self.path.to_path_buf(),
            })?;
        shape.get(i).copied().ok_or_else(|| {
            EngineError::file(
                format!("tensor {name} has shape {shape:?}, expected at least {} dims", i + 1),
                self.path,
            )
        })
    }

    fn rank(&self, name: &str) -> Option<usize> {
        self.shapes.get(name).map(|s| s.len())
    }

    /// How many `prefix{i}.` indices exist, counting from 0.
    fn count(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| self.has_prefix(&format!("{prefix}{i}.")))
            .count()
    }
}

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
    let open_clip = shapes.has_prefix(OPEN_CLIP_PREFIX);
    if !open_clip && !shapes.has_prefix(CLIP_PREFIX) {
        return Err(EngineError::file(
            format!("no text encoder: neither {CLIP_PREFIX}* nor {OPEN_CLIP_PREFIX}* tensors"),
            path,
        ));
    }
    let variant = if open_clip { Variant::Sd21 } else { Variant::Sd15 };
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
        Ok(WeightStore::from_tensors(component.name(), path, tensors, dtype)?
            .with_checkpoint_names(names))
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

/// The UNet's layout and config, read off its tensors.
fn unet_config(
    s: &Shapes,
    variant: Variant,
    prediction: PredictionType,
) -> Result<(UNetLayout, UNetJson)> {
    let p = UNET_PREFIX;
    let conv_in = format!("{p}input_blocks.0.0.weight");
    // The first downsampler sits after the first level's resnets.
    let first_op = (1..64).find(|i| s.has(&format!("{p}input_blocks.{i}.0.op.weight")));
    let Some(first_op) = first_op else {
        return Err(EngineError::file(
            format!("cannot read the UNet's levels: no {p}input_blocks.N.0.op.weight"),
            s.path,
        ));
    };
    let layers_per_block = first_op - 1;
    let per = first_op;
    let input_blocks = s.count(&format!("{p}input_blocks."));
    if layers_per_block == 0 || !input_blocks.is_multiple_of(per) {
        return Err(EngineError::file(
            format!("cannot read the UNet's levels from {input_blocks} input blocks"),
            s.path,
        ));
    }
    let levels = input_blocks / per;
    let mut channels = Vec::with_capacity(levels);
    let mut attention = Vec::with_capacity(levels);
    let mut transformer_depth = Vec::with_capacity(levels);
    let mut cross_attention_dim = None;
    let mut linear_projection = false;
    for b in 0..levels {
        let block = format!("{p}input_blocks.{}", 1 + b * per);
        channels.push(s.dim(&format!("{block}.0.out_layers.3.weight"), 0)?);
        let proj_in = format!("{block}.1.proj_in.weight");
        let has_attention = s.has(&proj_in);
        attention.push(has_attention);
        transformer_depth.push(s.count(&format!("{block}.1.transformer_blocks.")).max(1));
        if has_attention {
            linear_projection = s.rank(&proj_in) == Some(2);
            let to_k = format!("{block}.1.transformer_blocks.0.attn2.to_k.weight");
            cross_attention_dim = Some(s.dim(&to_k, 1)?);
        }
    }
    let cross_attention_dim = cross_attention_dim.ok_or_else(|| {
        EngineError::file("the UNet has no cross-attention (no ...1.proj_in.weight)", s.path)
    })?;
    // SD 1.x has 8 heads per attention; SD 2.x has heads of width 64.
    let heads: Vec<usize> = match variant {
        Variant::Sd15 => vec![8; levels],
        _ => channels.iter().map(|c| (c / 64).max(1)).collect(),
    };
    let sample_size = if prediction == PredictionType::VPrediction {
        96
    } else {
        64
    };
    let json = UNetJson {
        in_channels: s.dim(&conv_in, 1)?,
        out_channels: s.dim(&format!("{p}out.2.weight"), 0)?,
        sample_size,
        block_out_channels: channels,
        down_block_types: attention
            .iter()
            .map(|&a| if a { "CrossAttnDownBlock2D" } else { "DownBlock2D" }.to_string())
            .collect(),
        layers_per_block,
        attention_head_dim: PerBlock::Each(heads),
        cross_attention_dim,
        norm_num_groups: 32,
        norm_eps: 1e-5,
        use_linear_projection: linear_projection,
        transformer_layers_per_block: transformer_depth
            .iter()
            .any(|&d| d != 1)
            .then(|| PerBlock::Each(transformer_depth)),
        addition_embed_type: None,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        downsample_padding: 1,
        mid_block_scale_factor: 1.0,
        center_input_sample: false,
    };
    Ok((
        UNetLayout {
            layers_per_block,
            attention,
        },
        json,
    ))
}

/// The VAE's config, read off its tensors.
fn vae_config(s: &Shapes) -> Result<VaeJson> {
    let p = VAE_PREFIX;
    let levels = s.count(&format!("{p}encoder.down."));
    let layers_per_block = s.count(&format!("{p}encoder.down.0.block."));
    if levels == 0 || layers_per_block == 0 {
        return Err(EngineError::MissingTensor {
            name: format!("{p}encoder.down.0.block.0.conv1.weight"),
            path: s.path.to_path_buf(),
        });
    }
    let block_out_channels = (0..levels)
        .map(|i| s.dim(&format!("{p}encoder.down.{i}.block.0.conv1.weight"), 0))
        .collect::<Result<Vec<_>>>()?;
    Ok(VaeJson {
        in_channels: s.dim(&format!("{p}encoder.conv_in.weight"), 1)?,
        out_channels: s.dim(&format!("{p}decoder.conv_out.weight"), 0)?,
        block_out_channels,
        layers_per_block,
        latent_channels: s.dim(&format!("{p}decoder.conv_in.weight"), 1)?,
        norm_num_groups: 32,
        scaling_factor: 0.18215,
        sample_size: None,
        use_quant_conv: s.has(&format!("{p}quant_conv.weight")),
        use_post_quant_conv: s.has(&format!("{p}post_quant_conv.weight")),
    })
}

/// The text encoder's config and names, read off its tensors.
fn text_config(s: &Shapes, open_clip: bool) -> Result<(TextEncoderJson, KeyMap)> {
    let (token, position, layers, fc1, activation, map) = if open_clip {
        let p = OPEN_CLIP_PREFIX;
        let in_file = s.count(&format!("{p}transformer.resblocks."));
        (
            format!("{p}token_embedding.weight"),
            format!("{p}positional_embedding"),
            in_file.saturating_sub(1),
            format!("{p}transformer.resblocks.0.mlp.c_fc.weight"),
            "gelu",
            ldm_keys::open_clip_map(in_file),
        )
    } else {
        let p = if s.has_prefix(&format!("{CLIP_PREFIX}text_model.")) {
            format!("{CLIP_PREFIX}text_model.")
        } else {
            CLIP_PREFIX.to_string()
        };
        (
            format!("{p}embeddings.token_embedding.weight"),
            format!("{p}embeddings.position_embedding.weight"),
            s.count(&format!("{p}encoder.layers.")),
            format!("{p}encoder.layers.0.mlp.fc1.weight"),
            "quick_gelu",
            ldm_keys::clip_map(),
        )
    };
    let hidden_size = s.dim(&token, 1)?;
    let json = TextEncoderJson {
        vocab_size: s.dim(&token, 0)?,
        hidden_size,
        intermediate_size: s.dim(&fc1, 0)?,
        num_hidden_layers: layers,
        num_attention_heads: (hidden_size / 64).max(1),
        max_position_embeddings: s.dim(&position, 0)?,
        hidden_act: activation.to_string(),
        layer_norm_eps: 1e-5,
        projection_dim: None,
        architectures: None,
    };
    Ok((json, map))
}

/// Splits OpenCLIP's fused `in_proj` tensors into transformers' `q_proj`, `k_proj`, `v_proj`.
fn split_fused(mut tensors: HashMap<String, Tensor>, path: &Path) -> Result<HashMap<String, Tensor>> {
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
