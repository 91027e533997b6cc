//! Reading diffusers' config files into candle-transformers' config structs.
//!
//! A model folder in the diffusers layout describes each component in its own `config.json`;
//! the program reads those rather than guessing from folder names, so any checkpoint whose
//! configs fit the supported architecture loads, the embedded model included.

use std::path::Path;

use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::file(format!("cannot read config: {e}"), path))?;
    serde_json::from_str(&text)
        .map_err(|e| EngineError::file(format!("malformed config: {e}"), path))
}

/// A value that diffusers writes either once or once per block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same value for every block.
    One(usize),
    /// One value per block.
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> Option<usize> {
        match self {
            PerBlock::One(v) => Some(*v),
            PerBlock::Each(v) => v.get(i).copied(),
        }
    }
}

/// diffusers' `unet/config.json`, the fields the program uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetJson {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Latent side length the model was trained at.
    pub sample_size: usize,
    /// Channels of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// `CrossAttnDownBlock2D` or `DownBlock2D`, per level.
    pub down_block_types: Vec<String>,
    /// Resnets per block.
    pub layers_per_block: usize,
    /// Number of attention heads (diffusers' historical name), per level or for all.
    pub attention_head_dim: PerBlock,
    /// Width of the text conditioning.
    pub cross_attention_dim: usize,
    /// Groups in group norms.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Epsilon of group norms.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Linear rather than 1x1 conv projections in transformers (SD 2.x).
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Transformer blocks per attention (SDXL uses more than one).
    #[serde(default)]
    pub transformer_layers_per_block: Option<PerBlock>,
    /// SDXL's extra conditioning; unsupported by this UNet.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Sinusoidal embedding order.
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Sinusoidal embedding shift.
    #[serde(default)]
    pub freq_shift: f64,
    /// Padding of the downsampling convolutions.
    #[serde(default = "default_one")]
    pub downsample_padding: usize,
    /// Scale of the mid block's output.
    #[serde(default = "default_one_f")]
    pub mid_block_scale_factor: f64,
    /// Whether inputs are mapped from [0, 1] to [-1, 1].
    #[serde(default)]
    pub center_input_sample: bool,
}

fn default_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_one() -> usize {
    1
}
fn default_one_f() -> f64 {
    1.0
}

impl UNetJson {
    /// candle-transformers' config for this UNet.
    pub fn to_candle(&self, path: &Path) -> Result<UNet2DConditionModelConfig> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n {
            return Err(EngineError::file(
                format!(
                    "block_out_channels has {n} entries but down_block_types has {}",
                    self.down_block_types.len()
                ),
                path,
            ));
        }
        if self.addition_embed_type.is_some() {
            return Err(EngineError::file(
                "SDXL-style added conditioning (addition_embed_type) is not supported by this UNet",
                path,
            ));
        }
        let mut blocks = Vec::with_capacity(n);
        for (i, (&out_channels, kind)) in self
            .block_out_channels
            .iter()
            .zip(&self.down_block_types)
            .enumerate()
        {
            let heads = self.attention_head_dim.get(i).ok_or_else(|| {
                EngineError::file(
                    format!("attention_head_dim has no entry for block {i}"),
                    path,
                )
            })?;
            let layers = match &self.transformer_layers_per_block {
                None => 1,
                Some(p) => p.get(i).unwrap_or(1),
            };
            let use_cross_attn = match kind.as_str() {
                "CrossAttnDownBlock2D" => Some(layers),
                "DownBlock2D" => None,
                other => {
                    return Err(EngineError::file(
                        format!("unknown down block type {other}"),
                        path,
                    ));
                }
            };
            // candle-transformers' block resnets always use 32 groups, whatever the config says.
            let splits = [self.norm_num_groups, 32, heads];
            if splits
                .iter()
                .any(|&n| n == 0 || !out_channels.is_multiple_of(n))
            {
                return Err(EngineError::file(
                    format!(
                        "block {i}: {out_channels} channels do not split into {} and 32 groups \
                         and {heads} heads",
                        self.norm_num_groups
                    ),
                    path,
                ));
            }
            blocks.push(BlockConfig {
                out_channels,
                use_cross_attn,
                attention_head_dim: heads,
            });
        }
        Ok(UNet2DConditionModelConfig {
            center_input_sample: self.center_input_sample,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            blocks,
            layers_per_block: self.layers_per_block,
            downsample_padding: self.downsample_padding,
            mid_block_scale_factor: self.mid_block_scale_factor,
            norm_num_groups: self.norm_num_groups,
            norm_eps: self.norm_eps,
            cross_attention_dim: self.cross_attention_dim,
            // candle 0.11.1's sliced attention stacks where it should concatenate: never use it.
            sliced_attention_size: None,
            use_linear_projection: self.use_linear_projection,
        })
    }
}

/// diffusers' `vae/config.json`, the fields the program uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeJson {
    /// Image channels in.
    #[serde(default = "default_three")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "default_three")]
    pub out_channels: usize,
    /// Channels of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per block.
    pub layers_per_block: usize,
    /// Channels of the latent.
    pub latent_channels: usize,
    /// Groups in group norms.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Latents are multiplied by this before the UNet sees them.
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    /// Image side length the model was trained at.
    #[serde(default)]
    pub sample_size: Option<usize>,
    /// Whether the encoder output passes a 1x1 conv.
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    /// Whether the decoder input passes a 1x1 conv.
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
}

fn default_three() -> usize {
    3
}
fn default_scaling() -> f64 {
    0.18215
}

impl VaeJson {
    /// candle-transformers' config for this VAE.
    pub fn to_candle(&self) -> AutoEncoderKLConfig {
        AutoEncoderKLConfig {
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: self.layers_per_block,
            latent_channels: self.latent_channels,
            norm_num_groups: self.norm_num_groups,
            use_quant_conv: self.use_quant_conv,
            use_post_quant_conv: self.use_post_quant_conv,
        }
    }

    /// How many pixels one latent cell covers along a side.
    pub fn downscale(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd15_unet_config_maps_to_candle_defaults() {
        let json = r#"{"in_channels":4,"out_channels":4,"sample_size":64,
            "block_out_channels":[320,640,1280,1280],
            "down_block_types":["CrossAttnDownBlock2D","CrossAttnDownBlock2D","CrossAttnDownBlock2D","DownBlock2D"],
            "layers_per_block":2,"attention_head_dim":8,"cross_attention_dim":768}"#;
        let unet: UNetJson = serde_json::from_str(json).unwrap();
        let cfg = unet.to_candle(Path::new("unet/config.json")).unwrap();
        let reference = UNet2DConditionModelConfig::default();
        assert_eq!(cfg.blocks.len(), 4);
        for (a, b) in cfg.blocks.iter().zip(&reference.blocks) {
            assert_eq!(a.out_channels, b.out_channels);
            assert_eq!(a.use_cross_attn, b.use_cross_attn);
            assert_eq!(a.attention_head_dim, b.attention_head_dim);
        }
        assert_eq!(cfg.cross_attention_dim, 768);
    }

    #[test]
    fn per_block_heads_and_bad_block_types() {
        let json = r#"{"in_channels":4,"out_channels":4,"sample_size":96,
            "block_out_channels":[320,640],
            "down_block_types":["CrossAttnDownBlock2D","FancyBlock"],
            "layers_per_block":2,"attention_head_dim":[5,10],"cross_attention_dim":1024}"#;
        let unet: UNetJson = serde_json::from_str(json).unwrap();
        let err = unet
            .to_candle(Path::new("x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FancyBlock") && err.contains("x/config.json"),
            "{err}"
        );
    }
}
