//! TAESD, the tiny distilled decoder of Stable Diffusion latents, for sharp previews.
//!
//! When a model folder holds a `taesd/` folder (diffusers' `AutoencoderTiny` layout:
//! `config.json` and `diffusion_pytorch_model.safetensors`, or the original
//! `taesd_decoder.safetensors`), previews of the picture forming are decoded by it at full
//! resolution instead of the one-pixel-per-latent-cell projection of [`super::preview`]. It
//! costs a few percent of a Stable Diffusion step on the CPU. TAESD decodes the latents the
//! UNet sees (its scaling factor is 1).
//!
//! The network: `tanh(x / 3) * 3`, a 3x3 convolution and ReLU, then per stage a few residual
//! blocks (three 3x3 convolutions with ReLUs between, added to the input, then ReLU), a 2x
//! nearest upsampling and a bias-free 3x3 convolution; the last stage ends in a 3x3
//! convolution to RGB with bias. Output in [0, 1].

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use serde::Deserialize;

use super::error::{CandleContext, EngineError, Result};

/// diffusers' `AutoencoderTiny` config, the decoder's part.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TaesdConfig {
    /// Latent channels in.
    pub latent_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Channels of each decoder stage.
    pub decoder_block_out_channels: Vec<usize>,
    /// Residual blocks of each decoder stage.
    pub num_decoder_blocks: Vec<usize>,
    /// Upsampling factor between stages.
    pub upsampling_scaling_factor: usize,
}

impl Default for TaesdConfig {
    fn default() -> Self {
        Self {
            latent_channels: 4,
            out_channels: 3,
            decoder_block_out_channels: vec![64; 4],
            num_decoder_blocks: vec![3, 3, 3, 1],
            upsampling_scaling_factor: 2,
        }
    }
}

enum Layer {
    Conv(Conv2d),
    Relu,
    Block { convs: [Conv2d; 3] },
    Upsample(usize),
}

/// The TAESD decoder.
pub struct TinyDecoder {
    layers: Vec<Layer>,
    /// Pixels per latent cell along a side.
    pub downscale: usize,
}

fn conv(vb: VarBuilder, cin: usize, cout: usize, k: usize, bias: bool) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: k / 2,
        ..Default::default()
    };
    let built = if bias {
        candle_nn::conv2d(cin, cout, k, cfg, vb)
    } else {
        candle_nn::conv2d_no_bias(cin, cout, k, cfg, vb)
    };
    built.stage("build taesd")
}

impl TinyDecoder {
    /// Builds the decoder over `vb`, whose names are diffusers' (`decoder.layers.N...`).
    pub fn new(cfg: &TaesdConfig, vb: VarBuilder) -> Result<Self> {
        let stages = cfg.decoder_block_out_channels.len();
        if stages == 0 || stages != cfg.num_decoder_blocks.len() {
            return Err(EngineError::InvalidRequest(
                "taesd config: decoder_block_out_channels and num_decoder_blocks must have the \
                 same, non-zero length"
                    .into(),
            ));
        }
        let vb = vb.pp("decoder").pp("layers");
        let mut layers = Vec::new();
        let channels = &cfg.decoder_block_out_channels;
        layers.push(Layer::Conv(conv(
            vb.pp(0),
            cfg.latent_channels,
            channels[0],
            3,
            true,
        )?));
        layers.push(Layer::Relu);
        for (i, (&c, &blocks)) in channels.iter().zip(&cfg.num_decoder_blocks).enumerate() {
            let last = i + 1 == stages;
            for _ in 0..blocks {
                let block = vb.pp(layers.len()).pp("conv");
                layers.push(Layer::Block {
                    convs: [
                        conv(block.pp(0), c, c, 3, true)?,
                        conv(block.pp(2), c, c, 3, true)?,
                        conv(block.pp(4), c, c, 3, true)?,
                    ],
                });
            }
            if !last {
                layers.push(Layer::Upsample(cfg.upsampling_scaling_factor));
            }
            let out = if last { cfg.out_channels } else { c };
            layers.push(Layer::Conv(conv(vb.pp(layers.len()), c, out, 3, last)?));
        }
        Ok(Self {
            layers,
            downscale: cfg.upsampling_scaling_factor.pow(stages as u32 - 1),
        })
    }

    /// Loads `dir` (a `taesd` folder): diffusers' layout, or the original decoder file whose
    /// names lack the `decoder.layers.` prefix and count from 1 (index 0 was the clamp).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let cfg: TaesdConfig = if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| EngineError::file(e.to_string(), &config_path))?;
            serde_json::from_str(&text)
                .map_err(|e| EngineError::file(format!("not a TAESD config: {e}"), &config_path))?
        } else {
            TaesdConfig::default()
        };
        let diffusers = dir.join("diffusion_pytorch_model.safetensors");
        let original = dir.join("taesd_decoder.safetensors");
        let (path, renamed) = if diffusers.is_file() {
            (diffusers, false)
        } else if original.is_file() {
            (original, true)
        } else {
            return Err(EngineError::file(
                "no diffusion_pytorch_model.safetensors or taesd_decoder.safetensors",
                dir,
            ));
        };
        let mut tensors = candle_core::safetensors::load(&path, device)
            .map_err(|e| EngineError::file(format!("unreadable safetensors: {e}"), &path))?;
        if renamed {
            tensors = tensors
                .into_iter()
                .filter_map(|(name, t)| {
                    let (index, rest) = name.split_once('.')?;
                    let index: usize = index.parse().ok()?;
                    Some((
                        format!("decoder.layers.{}.{rest}", index.checked_sub(1)?),
                        t,
                    ))
                })
                .collect();
        }
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| t.to_dtype(DType::F32).map(|t| (name, t)))
            .collect::<candle_core::Result<_>>()
            .stage("load taesd")?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(&cfg, vb).map_err(|e| EngineError::file(e.to_string(), &path))
    }

    /// Decodes latents `[B, C, h, w]` (as the UNet sees them) to images `[B, 3, H, W]` in
    /// [0, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.forward(latents).stage("taesd")
    }

    fn forward(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = ((latents / 3.0)?.tanh()? * 3.0)?;
        for layer in &self.layers {
            xs = match layer {
                Layer::Conv(c) => c.forward(&xs)?,
                Layer::Relu => xs.relu()?,
                Layer::Block { convs } => {
                    let h = convs[0].forward(&xs)?.relu()?;
                    let h = convs[1].forward(&h)?.relu()?;
                    (convs[2].forward(&h)? + &xs)?.relu()?
                }
                Layer::Upsample(f) => {
                    let (_, _, h, w) = xs.dims4()?;
                    xs.upsample_nearest2d(h * f, w * f)?
                }
            };
        }
        Ok(xs)
    }

    /// RGB8 pictures of latents `[B, C, h, w]`.
    pub fn preview(&self, latents: &Tensor) -> Result<Vec<Vec<u8>>> {
        let images = self.decode(latents)?;
        let (batch, _, h, w) = images.dims4().stage("taesd")?;
        let values = (images.clamp(0f32, 1f32).and_then(|t| t * 255.0))
            .and_then(|t| t.round())
            .and_then(|t| t.permute((0, 2, 3, 1)))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_dtype(DType::U8))
            .and_then(|t| t.to_vec1::<u8>())
            .stage("taesd")?;
        Ok(values
            .chunks(h * w * 3)
            .take(batch)
            .map(<[u8]>::to_vec)
            .collect())
    }
}
