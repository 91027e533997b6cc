//! Configs read off a single-file checkpoint's tensor shapes.
//!
//! Levels, channels, resnets per level, attention, latent channels, text width and depth all
//! show in the shapes and names of the tensors; what does not (group counts, head counts) is
//! fixed by the family, as the module above explains.

use std::collections::HashMap;
use std::path::Path;

use crate::engine::config::{PerBlock, UNetJson, VaeJson};
use crate::engine::error::{EngineError, Result};
use crate::engine::ldm_keys::{
    self, CLIP_PREFIX, KeyMap, OPEN_CLIP_PREFIX, UNET_PREFIX, UNetLayout, VAE_PREFIX,
};
use crate::engine::scheduler::PredictionType;
use crate::engine::text_encoder::TextEncoderJson;
use crate::engine::variant::Variant;

/// The tensors' shapes, for reading configs off them.
pub(super) struct Shapes<'a> {
    pub(super) shapes: HashMap<&'a str, &'a [usize]>,
    pub(super) path: &'a Path,
}

impl Shapes<'_> {
    fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    pub(super) fn has_prefix(&self, prefix: &str) -> bool {
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
                format!(
                    "tensor {name} has shape {shape:?}, expected at least {} dims",
                    i + 1
                ),
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

/// The UNet's layout and config, read off its tensors.
pub(super) fn unet_config(
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
        EngineError::file(
            "the UNet has no cross-attention (no ...1.proj_in.weight)",
            s.path,
        )
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
            .map(|&a| {
                if a {
                    "CrossAttnDownBlock2D"
                } else {
                    "DownBlock2D"
                }
                .to_string()
            })
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
            .then_some(PerBlock::Each(transformer_depth)),
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
pub(super) fn vae_config(s: &Shapes) -> Result<VaeJson> {
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
pub(super) fn text_config(s: &Shapes, open_clip: bool) -> Result<(TextEncoderJson, KeyMap)> {
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
