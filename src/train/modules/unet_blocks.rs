//! The UNet's resolution levels: down blocks that keep skip connections, up blocks that consume
//! them, and the cross-attention mid block, each with or without spatial transformers.
//!
//! One type covers candle-transformers' `DownBlock2D` and `CrossAttnDownBlock2D` (and likewise
//! for up blocks): the tensor names are identical apart from the `attentions.{i}` entries.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::{SpatialTransformer, SpatialTransformerConfig};
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D};

/// Group count candle-transformers uses for the resnets of UNet down and up blocks, whatever
/// `norm_num_groups` says (its `DownBlock2D` / `UpBlock2D` take the resnet config's default).
pub const UNET_BLOCK_RESNET_GROUPS: usize = 32;

/// One down block: `resnets.{i}`, optional `attentions.{i}` after each resnet, and
/// `downsamplers.0` unless it is the last level.
#[derive(Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialTransformer>,
    downsampler: Option<Downsample2D>,
}

impl DownBlock {
    /// Creates the block; `attn` is `None` for a block without cross-attention.
    pub fn new(
        vb: VarBuilder,
        num_layers: usize,
        resnet: ResnetConfig,
        attn: Option<SpatialTransformerConfig>,
        downsample_padding: Option<usize>,
    ) -> Result<Self> {
        let resnets = (0..num_layers)
            .map(|i| {
                let in_channels = if i == 0 {
                    resnet.in_channels
                } else {
                    resnet.out_channels
                };
                let cfg = ResnetConfig {
                    in_channels,
                    ..resnet
                };
                ResnetBlock2D::new(vb.pp("resnets").pp(i.to_string()), cfg)
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = match attn {
            None => vec![],
            Some(cfg) => (0..num_layers)
                .map(|i| SpatialTransformer::new(vb.pp("attentions").pp(i.to_string()), cfg))
                .collect::<Result<Vec<_>>>()?,
        };
        let downsampler = downsample_padding
            .map(|padding| {
                Downsample2D::new(vb.pp("downsamplers").pp("0"), resnet.out_channels, padding)
            })
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Returns the block's output and the skip connections it leaves for the up path.
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, context)?;
            }
            skips.push(xs.clone());
        }
        if let Some(downsampler) = &self.downsampler {
            xs = downsampler.forward(&xs)?;
            skips.push(xs.clone());
        }
        Ok((xs, skips))
    }
}

/// One up block: `resnets.{i}` on the input concatenated with a skip connection, optional
/// `attentions.{i}`, and `upsamplers.0` unless it is the last level.
#[derive(Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialTransformer>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    /// Creates the block. `resnet.in_channels` is the width of the deepest skip it consumes
    /// (candle-transformers' `in_channels`), `prev_out_channels` the width of the incoming
    /// feature map.
    pub fn new(
        vb: VarBuilder,
        num_layers: usize,
        prev_out_channels: usize,
        resnet: ResnetConfig,
        attn: Option<SpatialTransformerConfig>,
        add_upsample: bool,
    ) -> Result<Self> {
        let out_channels = resnet.out_channels;
        let resnets = (0..num_layers)
            .map(|i| {
                let skip_channels = if i == num_layers - 1 {
                    resnet.in_channels
                } else {
                    out_channels
                };
                let xs_channels = if i == 0 {
                    prev_out_channels
                } else {
                    out_channels
                };
                let cfg = ResnetConfig {
                    in_channels: xs_channels + skip_channels,
                    ..resnet
                };
                ResnetBlock2D::new(vb.pp("resnets").pp(i.to_string()), cfg)
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = match attn {
            None => vec![],
            Some(cfg) => (0..num_layers)
                .map(|i| SpatialTransformer::new(vb.pp("attentions").pp(i.to_string()), cfg))
                .collect::<Result<Vec<_>>>()?,
        };
        let upsampler = add_upsample
            .then(|| Upsample2D::new(vb.pp("upsamplers").pp("0"), out_channels))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// Number of skip connections the block consumes.
    pub fn num_skips(&self) -> usize {
        self.resnets.len()
    }

    /// Runs the block, consuming `skips` from the last to the first; the output is resized to
    /// `upsample_size` (height, width) when given, else doubled.
    pub fn forward(
        &self,
        xs: &Tensor,
        skips: &[Tensor],
        temb: &Tensor,
        context: &Tensor,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (i, (resnet, skip)) in self.resnets.iter().zip(skips.iter().rev()).enumerate() {
            xs = Tensor::cat(&[&xs, skip], 1)?;
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, context)?;
            }
        }
        match &self.upsampler {
            Some(upsampler) => upsampler.forward(&xs, upsample_size),
            None => Ok(xs),
        }
    }
}

/// The mid block: `resnets.0`, then for each layer `attentions.{i}` and `resnets.{i + 1}`.
#[derive(Debug)]
pub struct MidBlock {
    resnet: ResnetBlock2D,
    attn_resnets: Vec<(SpatialTransformer, ResnetBlock2D)>,
}

impl MidBlock {
    /// Creates a mid block with one attention layer, as candle-transformers' UNet does.
    pub fn new(
        vb: VarBuilder,
        resnet: ResnetConfig,
        attn: SpatialTransformerConfig,
    ) -> Result<Self> {
        let first = ResnetBlock2D::new(vb.pp("resnets").pp("0"), resnet)?;
        let attn = SpatialTransformer::new(vb.pp("attentions").pp("0"), attn)?;
        let second = ResnetBlock2D::new(vb.pp("resnets").pp("1"), resnet)?;
        Ok(Self {
            resnet: first,
            attn_resnets: vec![(attn, second)],
        })
    }

    /// Runs the block on the deepest feature map.
    pub fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let mut xs = self.resnet.forward(xs, Some(temb))?;
        for (attn, resnet) in &self.attn_resnets {
            xs = resnet.forward(&attn.forward(&xs, context)?, Some(temb))?;
        }
        Ok(xs)
    }
}
