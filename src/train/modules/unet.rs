//! The trainable UNet: the same network, tensor names and shapes as candle-transformers'
//! `UNet2DConditionModel`, built from differentiable ops and taking one timestep per sample.
//!
//! Facts about candle-transformers 0.11.1's UNet that this module reproduces:
//!
//! - The resnets inside down and up blocks normalise with 32 groups whatever
//!   `norm_num_groups` is ([`UNET_BLOCK_RESNET_GROUPS`]); `norm_num_groups` only reaches the
//!   mid block resnets, every spatial transformer's group norm and `conv_norm_out`. So every
//!   block's `out_channels` (and the concatenations feeding the up blocks) must be divisible
//!   by 32, and by `norm_num_groups`.
//! - A consequence: in a block with exactly 32 channels each group holds one channel, so
//!   `norm2` removes the per-channel timestep embedding (and `conv1`'s bias) that the resnet
//!   adds just before it. Such a level's resnets get no timestep information and those tensors
//!   get no gradient; give every block at least 64 channels to condition every level.
//! - `BlockConfig::attention_head_dim` is the number of heads (diffusers' legacy naming); each
//!   head is `out_channels / attention_head_dim` wide.
//! - Spatial transformer group norms use eps 1e-6 and layer norms 1e-5, whatever `norm_eps`.
//! - The mid block always has cross-attention, with the last block's head count and depth.
//! - The feed-forward gate uses tanh-approximated GELU.
//!
//! `sliced_attention_size` is ignored: slicing computes the same values.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{GroupNorm, Linear, VarBuilder};

use super::layers::Conv2d;
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModelConfig;

use super::ModuleConfigError;
use super::attention::SpatialTransformerConfig;
use super::layers::{conv2d, group_norm};
use super::resnet::ResnetConfig;
pub use super::unet_blocks::UNET_BLOCK_RESNET_GROUPS;
use super::unet_blocks::{DownBlock, MidBlock, UpBlock};

/// Sinusoidal embedding of one timestep per sample, as candle-transformers' `Timesteps`.
#[derive(Debug)]
struct TimestepProjection {
    num_channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
}

impl TimestepProjection {
    fn forward(&self, timesteps: &Tensor) -> Result<Tensor> {
        let half_dim = self.num_channels / 2;
        let exponent = (Tensor::arange(0, half_dim as u32, timesteps.device())?
            .to_dtype(DType::F32)?
            * -f64::ln(10000.))?;
        let exponent = (exponent / (half_dim as f64 - self.freq_shift))?;
        let freqs = exponent.exp()?.to_dtype(timesteps.dtype())?;
        let args = timesteps
            .unsqueeze(D::Minus1)?
            .broadcast_mul(&freqs.unsqueeze(0)?)?;
        let (cos, sin) = (args.cos()?, args.sin()?);
        if self.flip_sin_to_cos {
            Tensor::cat(&[&cos, &sin], D::Minus1)
        } else {
            Tensor::cat(&[&sin, &cos], D::Minus1)
        }
    }
}

/// Trainable counterpart of `UNet2DConditionModel` (the `unet` of a diffusers pipeline).
#[derive(Debug)]
pub struct TrainUNet {
    conv_in: Conv2d,
    time_proj: TimestepProjection,
    time_linear_1: Linear,
    time_linear_2: Linear,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    center_input_sample: bool,
}

impl TrainUNet {
    /// Creates (from a `VarMap`-backed `vb`) or loads the UNet's tensors, named as
    /// candle-transformers' `UNet2DConditionModel::new(vb, in_channels, out_channels, _, config)`
    /// names them.
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        config: &UNet2DConditionModelConfig,
    ) -> Result<Self> {
        validate(config)?;
        let cfg = config;
        let blocks = &cfg.blocks;
        let n_blocks = blocks.len();
        let b_channels = blocks[0].out_channels;
        let last = blocks[n_blocks - 1];
        let time_embed_dim = b_channels * 4;

        let conv_in = conv2d(in_channels, b_channels, 3, 1, 1, vb.pp("conv_in"))?;
        let time_proj = TimestepProjection {
            num_channels: b_channels,
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
        };
        let vb_time = vb.pp("time_embedding");
        let time_linear_1 = candle_nn::linear(b_channels, time_embed_dim, vb_time.pp("linear_1"))?;
        let time_linear_2 =
            candle_nn::linear(time_embed_dim, time_embed_dim, vb_time.pp("linear_2"))?;

        let resnet = |in_channels, out_channels, groups| ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: Some(time_embed_dim),
            groups,
            eps: cfg.norm_eps,
            output_scale_factor: 1.,
        };
        let transformer = |channels, heads, depth| SpatialTransformerConfig {
            channels,
            heads,
            depth,
            num_groups: cfg.norm_num_groups,
            context_dim: cfg.cross_attention_dim,
            use_linear_projection: cfg.use_linear_projection,
        };

        // Down path.
        let down_blocks = (0..n_blocks)
            .map(|i| {
                let block = blocks[i];
                let in_ch = if i > 0 {
                    blocks[i - 1].out_channels
                } else {
                    b_channels
                };
                let attn = block
                    .use_cross_attn
                    .map(|depth| transformer(block.out_channels, block.attention_head_dim, depth));
                let resnet = resnet(in_ch, block.out_channels, UNET_BLOCK_RESNET_GROUPS);
                let padding = (i < n_blocks - 1).then_some(cfg.downsample_padding);
                let vb = vb.pp("down_blocks").pp(i.to_string());
                DownBlock::new(vb, cfg.layers_per_block, resnet, attn, padding)
            })
            .collect::<Result<Vec<_>>>()?;

        // Mid block, always with cross-attention.
        let mid_resnet = ResnetConfig {
            output_scale_factor: cfg.mid_block_scale_factor,
            ..resnet(last.out_channels, last.out_channels, cfg.norm_num_groups)
        };
        let mid_depth = last.use_cross_attn.unwrap_or(1);
        let mid_attn = transformer(last.out_channels, last.attention_head_dim, mid_depth);
        let mid_block = MidBlock::new(vb.pp("mid_block"), mid_resnet, mid_attn)?;

        // Up path, mirroring the down path.
        let up_blocks = (0..n_blocks)
            .map(|i| {
                let block = blocks[n_blocks - 1 - i];
                let prev_out = if i > 0 {
                    blocks[n_blocks - i].out_channels
                } else {
                    last.out_channels
                };
                let skip_index = if i == n_blocks - 1 {
                    0
                } else {
                    n_blocks - i - 2
                };
                let skip_ch = blocks[skip_index].out_channels;
                let attn = block
                    .use_cross_attn
                    .map(|depth| transformer(block.out_channels, block.attention_head_dim, depth));
                let resnet = resnet(skip_ch, block.out_channels, UNET_BLOCK_RESNET_GROUPS);
                let vb = vb.pp("up_blocks").pp(i.to_string());
                UpBlock::new(
                    vb,
                    cfg.layers_per_block + 1,
                    prev_out,
                    resnet,
                    attn,
                    i < n_blocks - 1,
                )
            })
            .collect::<Result<Vec<_>>>()?;

        let conv_norm_out = group_norm(
            cfg.norm_num_groups,
            b_channels,
            cfg.norm_eps,
            vb.pp("conv_norm_out"),
        )?;
        let conv_out = conv2d(b_channels, out_channels, 3, 1, 1, vb.pp("conv_out"))?;
        Ok(Self {
            conv_in,
            time_proj,
            time_linear_1,
            time_linear_2,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            center_input_sample: cfg.center_input_sample,
        })
    }

    /// Predicts the noise in `xs` (`[batch, in_channels, h, w]`) at `timestep` (`[batch]`, one
    /// timestep per sample) given the text embedding `encoder_hidden_states`
    /// (`[batch, seq, cross_attention_dim]`).
    ///
    /// With equal timesteps this computes what candle-transformers'
    /// `UNet2DConditionModel::forward(xs, timestep, encoder_hidden_states)` computes.
    pub fn forward(
        &self,
        xs: &Tensor,
        timestep: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        let (batch, _, height, width) = xs.dims4()?;
        let n_blocks = self.down_blocks.len();
        let up_factor = 1 << (n_blocks - 1);
        let forward_upsample_size = height % up_factor != 0 || width % up_factor != 0;
        if timestep.dims() != [batch] {
            return Err(candle_core::Error::wrap(ModuleConfigError::TimestepShape {
                batch,
                shape: timestep.dims().to_vec(),
            }));
        }

        // Inputs and timestep embedding.
        let xs = if self.center_input_sample {
            ((xs * 2.)? - 1.)?
        } else {
            xs.clone()
        };
        let emb = self.time_proj.forward(&timestep.to_dtype(xs.dtype())?)?;
        let emb = self.time_linear_1.forward(&emb)?.silu()?;
        let emb = self.time_linear_2.forward(&emb)?;
        // A non-contiguous text embedding (a transposed view, say) would reach `Linear`'s
        // batched matmul, which candle-core 0.11.1's CPU backend gets wrong for transposed
        // inputs; candle-transformers makes it contiguous too.
        let context = &encoder_hidden_states.contiguous()?;

        // Down path, keeping every skip connection.
        let xs = self.conv_in.forward(&xs)?;
        let mut skips = vec![xs.clone()];
        let mut xs = xs;
        for block in &self.down_blocks {
            let (out, block_skips) = block.forward(&xs, &emb, context)?;
            skips.extend(block_skips);
            xs = out;
        }

        let mut xs = self.mid_block.forward(&xs, &emb, context)?;

        // Up path; when the size is not a multiple of the total downscaling, each upsampler
        // resizes to the size of the skip connection it will meet next.
        let mut upsample_size = None;
        for (i, block) in self.up_blocks.iter().enumerate() {
            let block_skips = skips.split_off(skips.len() - block.num_skips());
            if i < n_blocks - 1
                && forward_upsample_size
                && let Some(next_skip) = skips.last()
            {
                let (_, _, h, w) = next_skip.dims4()?;
                upsample_size = Some((h, w));
            }
            xs = block.forward(&xs, &block_skips, &emb, context, upsample_size)?;
        }

        let xs = self.conv_norm_out.forward(&xs)?.silu()?;
        self.conv_out.forward(&xs)
    }
}

/// Rejects configurations candle-transformers would panic on or build inconsistently.
fn validate(cfg: &UNet2DConditionModelConfig) -> Result<()> {
    let err = |reason: String| {
        Err(candle_core::Error::wrap(ModuleConfigError::Invalid {
            module: "unet",
            reason,
        }))
    };
    let Some(first) = cfg.blocks.first() else {
        return err("the config has no blocks".into());
    };
    if !first.out_channels.is_multiple_of(2) {
        return err(format!(
            "the first block has {} channels, the timestep embedding needs an even number",
            first.out_channels
        ));
    }
    for (i, block) in cfg.blocks.iter().enumerate() {
        let heads = block.attention_head_dim;
        if heads == 0 || heads > block.out_channels {
            return err(format!(
                "block {i} has attention_head_dim (head count) {heads} for {} channels",
                block.out_channels
            ));
        }
        if cfg.use_linear_projection && !block.out_channels.is_multiple_of(heads) {
            return err(format!(
                "block {i}: with use_linear_projection, {} channels must divide into {heads} heads",
                block.out_channels
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
