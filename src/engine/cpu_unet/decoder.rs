//! The VAE's decoder run on the CPU without candle, with the UNet's kernels.
//!
//! candle-transformers' `AutoEncoderKL` decoder for the same config, read from the same
//! weights: the 1x1 `post_quant_conv`, `conv_in`, a mid block (resnet, one-head attention over
//! every cell, resnet), up blocks of `layers_per_block + 1` resnets with a nearest-neighbour
//! upsampler and a convolution between them, then group norm, SiLU and `conv_out`. Every group
//! norm there uses eps 1e-6 and the config's groups. At SD's sizes candle's convolutions are
//! what made a 512x512 decode take minutes on two cores; here they are packed products over
//! blocks of cells, so memory stays near one activation at a time.

use std::sync::Arc;

use candle_core::Tensor;

use super::kernels::{self, Mat};
use super::{Activation, PackedCache, Resnet, Weights, conv, output_head};
use crate::engine::config::VaeJson;
use crate::engine::error::Result;
use crate::engine::weights::WeightStore;

/// Epsilon of every group norm in candle's decoder.
const EPS: f64 = 1e-6;

/// The decoder's shape, from the VAE's config.
#[derive(Debug, Clone)]
pub struct CpuDecoder {
    block_out_channels: Vec<usize>,
    layers_per_block: usize,
    groups: usize,
    post_quant_conv: bool,
    packed: PackedCache,
}

impl CpuDecoder {
    /// The CPU decoder for a VAE config, or `None` for shapes it does not follow (those stay
    /// with candle's).
    pub fn new(config: &VaeJson) -> Option<Self> {
        let groups = config.norm_num_groups;
        let supported = groups > 0
            && config.latent_channels > 0
            && !config.block_out_channels.is_empty()
            && config
                .block_out_channels
                .iter()
                .all(|&c| c > 0 && c.is_multiple_of(groups));
        supported.then(|| Self {
            block_out_channels: config.block_out_channels.clone(),
            layers_per_block: config.layers_per_block,
            groups,
            post_quant_conv: config.use_post_quant_conv,
            packed: PackedCache::default(),
        })
    }

    /// The VAE store's weights packed, kept until the store changes (see `CpuUNet::weights`).
    pub fn weights(&self, store: &WeightStore) -> Result<Arc<Weights>> {
        self.packed.get(store)
    }

    /// Decodes one latent `[1, C, h, w]`, already divided by the scaling factor, into the
    /// picture `[1, 3, H, W]` in [-1, 1], as candle's `AutoEncoderKL::decode` does.
    pub fn decode(&self, weights: &Weights, latent: &Tensor) -> Result<Tensor> {
        let mut xs = Activation::from_planes(latent, "vae decode")?;
        if self.post_quant_conv {
            let weight = weights.matrix("post_quant_conv.weight")?;
            xs = Activation {
                values: kernels::linear(
                    &xs.values,
                    xs.grid.cells(),
                    xs.channels,
                    weight,
                    Some(weights.get("post_quant_conv.bias")?),
                )?,
                channels: weight.outputs(),
                ..xs
            };
        }

        let resnet = Resnet {
            groups: self.groups,
            eps: EPS,
            time: None,
            scale: 1.0,
        };
        xs = conv(weights, "decoder.conv_in", &xs, 1)?;
        xs = resnet.forward(weights, "decoder.mid_block.resnets.0", &xs)?;
        xs = attention(weights, "decoder.mid_block.attentions.0", &xs, self.groups)?;
        xs = resnet.forward(weights, "decoder.mid_block.resnets.1", &xs)?;
        let levels = self.block_out_channels.len();
        for i in 0..levels {
            for j in 0..=self.layers_per_block {
                xs = resnet.forward(weights, &format!("decoder.up_blocks.{i}.resnets.{j}"), &xs)?;
            }
            if i + 1 < levels {
                let (values, grid) = kernels::upsample2(&xs.values, xs.grid, xs.channels);
                xs = Activation { values, grid, ..xs };
                xs = conv(
                    weights,
                    &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                    &xs,
                    1,
                )?;
            }
        }
        output_head(weights, "decoder.", xs, self.groups, EPS)?
            .into_planes(latent.device(), "vae decode")
    }
}

/// The mid block's attention: group norm, one head over every cell, the output projection,
/// plus the input. Checkpoints name its layers `to_q`... or, older, `query`...
fn attention(
    weights: &Weights,
    prefix: &str,
    xs: &Activation,
    groups: usize,
) -> Result<Activation> {
    let names = if weights.matrix(&format!("{prefix}.to_q.weight")).is_ok() {
        ["to_q", "to_k", "to_v", "to_out.0"]
    } else {
        ["query", "key", "value", "proj_attn"]
    };
    let (cells, channels) = (xs.grid.cells(), xs.channels);
    let normed = kernels::group_norm(
        &xs.values,
        channels,
        groups,
        EPS,
        weights.get(&format!("{prefix}.group_norm.weight"))?,
        weights.get(&format!("{prefix}.group_norm.bias"))?,
        false,
    );
    let project = |name: &str, input: &[f32]| {
        kernels::linear(
            input,
            cells,
            channels,
            weights.matrix(&format!("{prefix}.{name}.weight"))?,
            Some(weights.get(&format!("{prefix}.{name}.bias"))?),
        )
    };
    let mut queries = project(names[0], &normed)?;
    let keys = project(names[1], &normed)?;
    let values = project(names[2], &normed)?;
    let scale = 1.0 / (channels as f32).sqrt();
    queries.iter_mut().for_each(|q| *q *= scale);

    let mut mixed = vec![0.0; cells * channels];
    let [q, k, v] = [&queries, &keys, &values].map(|m| Mat::rows(m, cells, channels));
    kernels::attend(&mut mixed, channels, q, k, v);
    let mut out = project(names[3], &mixed)?;
    kernels::add_in_place(&mut out, &xs.values);
    Ok(Activation {
        values: out,
        ..xs.clone()
    })
}
