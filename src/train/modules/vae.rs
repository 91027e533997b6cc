//! The trainable VAE: the same encoder, decoder, tensor names and shapes as
//! candle-transformers' `AutoEncoderKL`, built from differentiable ops.
//!
//! The mid-block attention is created with diffusers' current names (`to_q`, `to_k`, `to_v`,
//! `to_out.0`), which candle-transformers loads in preference to the legacy `query`, `key`,
//! `value`, `proj_attn`. All group norms use `norm_num_groups` with eps 1e-6, so every entry of
//! `block_out_channels` must be divisible by `norm_num_groups`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{GroupNorm, Linear, VarBuilder};

use super::layers::Conv2d;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;

use super::ModuleConfigError;
use super::layers::{conv2d, group_norm, softmax_last_dim};
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D};

/// Epsilon of every group norm in the VAE.
const VAE_NORM_EPS: f64 = 1e-6;

/// Single-head self-attention over the pixels of the deepest feature map.
#[derive(Debug)]
struct AttentionBlock {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    scale: f64,
}

impl AttentionBlock {
    fn new(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        let linear = |name| candle_nn::linear(channels, channels, vb.pp(name));
        Ok(Self {
            group_norm: group_norm(groups, channels, VAE_NORM_EPS, vb.pp("group_norm"))?,
            to_q: linear("to_q")?,
            to_k: linear("to_k")?,
            to_v: linear("to_v")?,
            to_out: linear("to_out.0")?,
            scale: 1. / (channels as f64).sqrt(),
        })
    }
}

impl Module for AttentionBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let residual = xs;
        let (batch, channels, height, width) = xs.dims4()?;
        // Pixels as a sequence, [batch, h * w, channels], made contiguous: candle-core 0.11.1's
        // CPU matmul folds a transposed lhs times a batch-broadcast rhs (which `Linear` builds
        // for a non-contiguous 3-D input) into one wrong gemm when batch > 1. candle-transformers'
        // `AttentionBlock` passes the transposed view, so its VAE is wrong for batches on CPU.
        let xs = self
            .group_norm
            .forward(xs)?
            .reshape((batch, channels, height * width))?
            .transpose(1, 2)?
            .contiguous()?;
        let query = self.to_q.forward(&xs)?;
        let key = self.to_k.forward(&xs)?;
        let value = self.to_v.forward(&xs)?;
        let scores = (query.matmul(&key.t()?)? * self.scale)?;
        let xs = softmax_last_dim(&scores)?.matmul(&value)?;
        let xs = self
            .to_out
            .forward(&xs)?
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        xs + residual
    }
}

/// `resnets.0`, `attentions.0`, `resnets.1` at the deepest level, without timestep input.
#[derive(Debug)]
struct MidBlock {
    resnet_0: ResnetBlock2D,
    attention: AttentionBlock,
    resnet_1: ResnetBlock2D,
}

impl MidBlock {
    fn new(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        let cfg = vae_resnet(channels, channels, groups);
        Ok(Self {
            resnet_0: ResnetBlock2D::new(vb.pp("resnets").pp("0"), cfg)?,
            attention: AttentionBlock::new(vb.pp("attentions").pp("0"), channels, groups)?,
            resnet_1: ResnetBlock2D::new(vb.pp("resnets").pp("1"), cfg)?,
        })
    }
}

impl Module for MidBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.resnet_0.forward(xs, None)?;
        let xs = self.attention.forward(&xs)?;
        self.resnet_1.forward(&xs, None)
    }
}

/// `n` VAE resnets under `vb.resnets`, the first taking `c_in` channels.
fn vae_resnets(
    vb: &VarBuilder,
    n: usize,
    c_in: usize,
    c_out: usize,
    groups: usize,
) -> Result<Vec<ResnetBlock2D>> {
    (0..n)
        .map(|i| {
            let c_in = if i == 0 { c_in } else { c_out };
            let vb = vb.pp("resnets").pp(i.to_string());
            ResnetBlock2D::new(vb, vae_resnet(c_in, c_out, groups))
        })
        .collect()
}

fn vae_resnet(in_channels: usize, out_channels: usize, groups: usize) -> ResnetConfig {
    ResnetConfig {
        in_channels,
        out_channels,
        temb_channels: None,
        groups,
        eps: VAE_NORM_EPS,
        output_scale_factor: 1.,
    }
}

/// A run of resnets at one resolution, then an optional resampler.
#[derive(Debug)]
struct Level<S> {
    resnets: Vec<ResnetBlock2D>,
    resampler: Option<S>,
}

impl<S> Level<S> {
    fn run_resnets(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = xs.clone();
        for resnet in &self.resnets {
            xs = resnet.forward(&xs, None)?;
        }
        Ok(xs)
    }
}

/// Encoder (`encoder.*`) and decoder (`decoder.*`) shared shape: convolution in, levels, mid
/// block, group norm, SiLU, convolution out.
#[derive(Debug)]
struct Coder<S> {
    conv_in: Conv2d,
    levels: Vec<Level<S>>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// Trainable counterpart of `AutoEncoderKL` (the `vae` of a diffusers pipeline).
#[derive(Debug)]
pub struct TrainVae {
    encoder: Coder<Downsample2D>,
    decoder: Coder<Upsample2D>,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl TrainVae {
    /// Creates (from a `VarMap`-backed `vb`) or loads the VAE's tensors, named as
    /// candle-transformers' `AutoEncoderKL::new(vb, in_channels, out_channels, config)` names
    /// them (with the modern attention names).
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        config: &AutoEncoderKLConfig,
    ) -> Result<Self> {
        let channels = &config.block_out_channels;
        let (Some(&first), Some(&last)) = (channels.first(), channels.last()) else {
            return Err(candle_core::Error::wrap(ModuleConfigError::Invalid {
                module: "vae",
                reason: "block_out_channels is empty".into(),
            }));
        };
        let groups = config.norm_num_groups;
        let latent = config.latent_channels;
        let n = channels.len();

        // Encoder: full resolution down to the latent grid.
        let vb_enc = vb.pp("encoder");
        let levels = (0..n)
            .map(|i| {
                let vb = vb_enc.pp("down_blocks").pp(i.to_string());
                let c_in = if i > 0 { channels[i - 1] } else { first };
                let n_layers = config.layers_per_block;
                let resnets = vae_resnets(&vb, n_layers, c_in, channels[i], groups)?;
                let resampler = (i + 1 < n)
                    .then(|| Downsample2D::new(vb.pp("downsamplers").pp("0"), channels[i], 0))
                    .transpose()?;
                Ok(Level { resnets, resampler })
            })
            .collect::<Result<Vec<_>>>()?;
        let encoder = Coder {
            conv_in: conv2d(in_channels, first, 3, 1, 1, vb_enc.pp("conv_in"))?,
            levels,
            mid_block: MidBlock::new(vb_enc.pp("mid_block"), last, groups)?,
            conv_norm_out: group_norm(groups, last, VAE_NORM_EPS, vb_enc.pp("conv_norm_out"))?,
            conv_out: conv2d(last, 2 * latent, 3, 1, 1, vb_enc.pp("conv_out"))?,
        };

        // Decoder: the latent grid back up to full resolution.
        let vb_dec = vb.pp("decoder");
        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let levels = (0..n)
            .map(|i| {
                let vb = vb_dec.pp("up_blocks").pp(i.to_string());
                let c_in = if i > 0 { reversed[i - 1] } else { reversed[0] };
                let n_layers = config.layers_per_block + 1;
                let resnets = vae_resnets(&vb, n_layers, c_in, reversed[i], groups)?;
                let resampler = (i + 1 < n)
                    .then(|| Upsample2D::new(vb.pp("upsamplers").pp("0"), reversed[i]))
                    .transpose()?;
                Ok(Level { resnets, resampler })
            })
            .collect::<Result<Vec<_>>>()?;
        let decoder = Coder {
            conv_in: conv2d(latent, last, 3, 1, 1, vb_dec.pp("conv_in"))?,
            levels,
            mid_block: MidBlock::new(vb_dec.pp("mid_block"), last, groups)?,
            conv_norm_out: group_norm(groups, first, VAE_NORM_EPS, vb_dec.pp("conv_norm_out"))?,
            conv_out: conv2d(first, out_channels, 3, 1, 1, vb_dec.pp("conv_out"))?,
        };

        let quant_conv = config
            .use_quant_conv
            .then(|| conv2d(2 * latent, 2 * latent, 1, 0, 1, vb.pp("quant_conv")))
            .transpose()?;
        let post_quant_conv = config
            .use_post_quant_conv
            .then(|| conv2d(latent, latent, 1, 0, 1, vb.pp("post_quant_conv")))
            .transpose()?;
        Ok(Self {
            encoder,
            decoder,
            quant_conv,
            post_quant_conv,
        })
    }

    /// Encodes images (`[batch, in_channels, h, w]`) to the parameters of the latent
    /// distribution, `(mean, logvar)`, each `[batch, latent_channels, h / f, w / f]`.
    ///
    /// These are the parameters candle-transformers' `DiagonalGaussianDistribution` is built
    /// from; like it (and unlike diffusers) the log-variance is not clamped.
    pub fn encode(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let enc = &self.encoder;
        let mut xs = enc.conv_in.forward(xs)?;
        for level in &enc.levels {
            xs = level.run_resnets(&xs)?;
            if let Some(down) = &level.resampler {
                xs = down.forward(&xs)?;
            }
        }
        let xs = enc.mid_block.forward(&xs)?;
        let xs = enc
            .conv_out
            .forward(&enc.conv_norm_out.forward(&xs)?.silu()?)?;
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(&xs)?,
            None => xs,
        };
        let latent = moments.dim(1)? / 2;
        Ok((
            moments.narrow(1, 0, latent)?,
            moments.narrow(1, latent, latent)?,
        ))
    }

    /// Decodes latents (`[batch, latent_channels, h, w]`) to images.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let dec = &self.decoder;
        let xs = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents)?,
            None => latents.clone(),
        };
        let mut xs = dec.mid_block.forward(&dec.conv_in.forward(&xs)?)?;
        for level in &dec.levels {
            xs = level.run_resnets(&xs)?;
            if let Some(up) = &level.resampler {
                xs = up.forward(&xs, None)?;
            }
        }
        let xs = dec.conv_norm_out.forward(&xs)?.silu()?;
        dec.conv_out.forward(&xs)
    }
}

#[cfg(test)]
mod tests;
