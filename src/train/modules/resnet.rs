//! The convolutional pieces the UNet and the VAE share: the residual block with optional
//! timestep conditioning, and the down- and upsamplers that change resolution between blocks.
//!
//! Tensor names and arithmetic follow candle-transformers' `stable_diffusion::resnet` and the
//! `Downsample2D` / `Upsample2D` of `stable_diffusion::unet_2d_blocks`.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{GroupNorm, Linear, VarBuilder};

use super::layers::{Conv2d, conv2d, group_norm, upsample_nearest_2x};

/// Shape and normalisation settings of one [`ResnetBlock2D`].
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    /// Channels going in.
    pub in_channels: usize,
    /// Channels coming out; a 1x1 `conv_shortcut` is created when they differ from the input.
    pub out_channels: usize,
    /// Width of the timestep embedding, `None` for the unconditioned VAE blocks.
    pub temb_channels: Option<usize>,
    /// Group count of both group norms.
    pub groups: usize,
    /// Epsilon of both group norms.
    pub eps: f64,
    /// The block's output is divided by this.
    pub output_scale_factor: f64,
}

/// Residual block: two group norm, SiLU, 3x3 conv stages, the timestep embedding added in
/// between, and a skip connection.
#[derive(Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    time_emb_proj: Option<Linear>,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// Creates `norm1`, `conv1`, `time_emb_proj`, `norm2`, `conv2` and `conv_shortcut` under `vb`.
    pub fn new(vb: VarBuilder, cfg: ResnetConfig) -> Result<Self> {
        let (c_in, c_out) = (cfg.in_channels, cfg.out_channels);
        let norm1 = group_norm(cfg.groups, c_in, cfg.eps, vb.pp("norm1"))?;
        let conv1 = conv2d(c_in, c_out, 3, 1, 1, vb.pp("conv1"))?;
        let norm2 = group_norm(cfg.groups, c_out, cfg.eps, vb.pp("norm2"))?;
        let conv2 = conv2d(c_out, c_out, 3, 1, 1, vb.pp("conv2"))?;
        let conv_shortcut = if c_in != c_out {
            Some(conv2d(c_in, c_out, 1, 0, 1, vb.pp("conv_shortcut"))?)
        } else {
            None
        };
        let time_emb_proj = cfg
            .temb_channels
            .map(|temb| candle_nn::linear(temb, c_out, vb.pp("time_emb_proj")))
            .transpose()?;
        Ok(Self {
            norm1,
            conv1,
            norm2,
            conv2,
            time_emb_proj,
            conv_shortcut,
            output_scale_factor: cfg.output_scale_factor,
        })
    }

    /// Runs the block on `xs` (`[batch, in_channels, h, w]`), conditioned on the timestep
    /// embedding `temb` (`[batch, temb_channels]`) when the block has a projection for it.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        let xs = self.conv1.forward(&self.norm1.forward(xs)?.silu()?)?;

        // Add the projected timestep embedding to every pixel.
        let xs = match (temb, &self.time_emb_proj) {
            (Some(temb), Some(proj)) => proj
                .forward(&temb.silu()?)?
                .unsqueeze(D::Minus1)?
                .unsqueeze(D::Minus1)?
                .broadcast_add(&xs)?,
            _ => xs,
        };

        let xs = self.conv2.forward(&self.norm2.forward(&xs)?.silu()?)?;
        let xs = (shortcut + xs)?;
        if self.output_scale_factor == 1. {
            Ok(xs)
        } else {
            xs / self.output_scale_factor
        }
    }
}

/// Halves the resolution with a stride-2 3x3 convolution (`conv`).
///
/// With `padding == 0` the input is first padded by one pixel on the right and bottom only, as
/// the VAE encoder does.
#[derive(Debug)]
pub struct Downsample2D {
    conv: Conv2d,
    padding: usize,
}

impl Downsample2D {
    /// Creates `conv` under `vb`.
    pub fn new(vb: VarBuilder, channels: usize, padding: usize) -> Result<Self> {
        let conv = conv2d(channels, channels, 3, padding, 2, vb.pp("conv"))?;
        Ok(Self { conv, padding })
    }
}

impl Module for Downsample2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.padding == 0 {
            let xs = xs
                .pad_with_zeros(D::Minus1, 0, 1)?
                .pad_with_zeros(D::Minus2, 0, 1)?;
            self.conv.forward(&xs)
        } else {
            self.conv.forward(xs)
        }
    }
}

/// Doubles the resolution (or resizes to a given size) by nearest-neighbour upsampling, then
/// applies a 3x3 convolution (`conv`).
#[derive(Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    /// Creates `conv` under `vb`.
    pub fn new(vb: VarBuilder, channels: usize) -> Result<Self> {
        let conv = conv2d(channels, channels, 3, 1, 1, vb.pp("conv"))?;
        Ok(Self { conv })
    }

    /// Upsamples `xs` to twice its size, or to `size` (height, width) when given.
    ///
    /// The backward pass through an explicit `size` is only defined for whole, equal factors.
    pub fn forward(&self, xs: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, height, width) = xs.dims4()?;
        let xs = match size {
            Some((h, w)) if (h, w) != (2 * height, 2 * width) => xs.upsample_nearest2d(h, w)?,
            _ => upsample_nearest_2x(xs)?,
        };
        self.conv.forward(&xs)
    }
}
