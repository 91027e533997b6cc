//! The UNet run on the CPU without candle: the embedded model's and Stable Diffusion 1.x/2.x's.
//!
//! On the embedded model's 8 x 8 latents candle spends most of a call outside arithmetic:
//! allocating and zeroing a fresh buffer per operation, unfolding convolutions, dispatching
//! some three hundred small operations, computing GELU with the library `tanh`. At SD's sizes
//! its convolutions run well below the cores' speed. This module computes the same network,
//! candle-transformers' `UNet2DConditionModel` for the same config, read from the same
//! weights, in loops over token-major slices (see `kernels`) and products against weights
//! packed for them (see `packed`), one picture per call.
//!
//! The packed [`Weights`] are made from the store as it is after the run's edits, so
//! knockouts and noise act here exactly as in candle's module, and are kept until the next edit
//! (see [`CpuUNet::weights`]). Each conditioning gets a [`Context`], whose cross-attention keys
//! and values are computed once per run instead of once per step. Results agree with candle's
//! module to float rounding (see the tests); they are the same bytes run after run and alone
//! or in a batch, because every call sees one picture and a fixed order of sums.

mod decoder;
mod kernels;
mod packed;

pub use decoder::CpuDecoder;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::Tensor;
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModelConfig;

use super::error::{CandleContext, EngineError, Result};
use super::weights::{StoreVersion, WeightStore};
use kernels::{Grid, Mat};
use packed::Packed;

/// UNets with at most this many weights go through this UNet (SD 1.x and 2.x hold about 865
/// million). Their packing (see [`CpuUNet::weights`]) is a second copy of the weights in memory,
/// 3.4 GB for those, made once per version of the store.
pub const MAX_WEIGHTS: usize = 2_000_000_000;

/// Latents up to this many cells per picture go through this UNet (256 x 256: the embedded
/// model's pictures up to 1024 pixels, SD's up to 2048). Attention goes over blocks of queries
/// (see `kernels::attend`) and convolutions over blocks of cells, so memory grows with the
/// activations alone; candle's module holds every score of a self-attention at once.
pub const MAX_CELLS: usize = 256 * 256;

/// The network's shape, taken from the same config candle's module is built from.
#[derive(Debug, Clone)]
pub struct CpuUNet {
    config: UNet2DConditionModelConfig,
    packed: PackedCache,
}

/// The latest [`Weights`] packed, with the store version they were packed from.
#[derive(Clone, Default)]
struct PackedCache(Arc<Mutex<Option<Packing>>>);

struct Packing {
    version: StoreVersion,
    weights: Arc<Weights>,
}

impl PackedCache {
    /// The store's weights packed: the cached packing while the store is at its version, else
    /// a new one that takes over every tensor not edited since.
    fn get(&self, store: &WeightStore) -> Result<Arc<Weights>> {
        let version = store.version();
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(packing) = cached.as_ref()
            && packing.version == version
        {
            return Ok(Arc::clone(&packing.weights));
        }
        let previous = cached.take();
        let weights = Arc::new(Weights::snapshot(
            store,
            previous.as_ref().map(|p| (p.version, p.weights.as_ref())),
        )?);
        *cached = Some(Packing {
            version,
            weights: Arc::clone(&weights),
        });
        Ok(weights)
    }
}

impl std::fmt::Debug for PackedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackedCache")
    }
}

/// Resnets inside candle-transformers' down and up blocks normalise over 32 groups whatever
/// the config says (only the mid block's follow `norm_num_groups`).
const BLOCK_RESNET_GROUPS: usize = 32;

/// The UNet's weights as plain values, as the store held them at one version.
///
/// Vectors (biases, norm scales) are kept as they are. Every weight of two or more dimensions
/// is a matrix from its inputs to its outputs, packed for [`packed::matmul`]: a linear layer's
/// `[out, in]` as `[in, out]`, a convolution's `[out, in, kh, kw]` as `[(ky, kx, in), out]`,
/// the order in which `kernels::conv3x3` gathers a neighbourhood.
pub struct Weights {
    vectors: HashMap<String, Arc<Vec<f32>>>,
    matrices: HashMap<String, Arc<Packed>>,
}

impl Weights {
    /// Copies every tensor of the store (with its current edits) into plain `f32` values,
    /// taking over from `previous` (weights read at that store version) every tensor not
    /// edited since.
    pub fn snapshot(
        store: &WeightStore,
        previous: Option<(StoreVersion, &Weights)>,
    ) -> Result<Self> {
        let (mut vectors, mut matrices) = (HashMap::new(), HashMap::new());
        for name in store.names() {
            if let Some((version, previous)) = previous
                && !store.changed_since(version, name)
            {
                if let Some(vector) = previous.vectors.get(name) {
                    vectors.insert(name.to_string(), Arc::clone(vector));
                    continue;
                }
                if let Some(matrix) = previous.matrices.get(name) {
                    matrices.insert(name.to_string(), Arc::clone(matrix));
                    continue;
                }
            }
            let tensor = store.get(name).ok_or_else(|| store.missing(name))?;
            let dims = tensor.dims().to_vec();
            let flat = tensor
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .stage("unet weights")?;
            match *dims.as_slice() {
                [_] => {
                    vectors.insert(name.to_string(), Arc::new(flat));
                }
                // A linear layer is a convolution with one tap. Row `tap * inputs + c` of the
                // packed matrix is channel c at that tap.
                [outputs, inputs, ref kernel @ ..] => {
                    let taps: usize = kernel.iter().product();
                    let packed = Packed::from_fn(inputs * taps, outputs, |row, o| {
                        let (tap, c) = (row / inputs, row % inputs);
                        flat[(o * inputs + c) * taps + tap]
                    });
                    matrices.insert(name.to_string(), Arc::new(packed));
                }
                // A scalar belongs to no layer this UNet computes; a layer that wanted it
                // would report it missing.
                [] => {}
            }
        }
        Ok(Self { vectors, matrices })
    }

    fn get(&self, name: &str) -> Result<&[f32]> {
        self.vectors
            .get(name)
            .map(|v| v.as_slice())
            .ok_or_else(|| missing(name))
    }

    fn matrix(&self, name: &str) -> Result<&Packed> {
        self.matrices
            .get(name)
            .map(Arc::as_ref)
            .ok_or_else(|| missing(name))
    }
}

fn missing(name: &str) -> EngineError {
    EngineError::InvalidRequest(format!(
        "UNet tensor {name} is missing or of the wrong rank"
    ))
}

/// One conditioning prepared for a run: the keys and values of every cross-attention.
pub struct Context {
    /// Keys and values, `[tokens, inner]` each, by the attention's weight prefix.
    keys_values: HashMap<String, (Vec<f32>, Vec<f32>)>,
    tokens: usize,
}

impl CpuUNet {
    /// The CPU UNet for a config and its output channels, or `None` for options it does not
    /// compute (which then stay with candle's module); the output takes its channels from
    /// `conv_out`'s weight.
    pub fn new(config: &UNet2DConditionModelConfig, out_channels: usize) -> Option<Self> {
        let supported = !config.center_input_sample
            && config.downsample_padding == 1
            && config.sliced_attention_size.is_none()
            && out_channels > 0
            && !config.blocks.is_empty()
            && config
                .blocks
                .iter()
                .all(|b| b.out_channels > 0 && b.attention_head_dim > 0);
        supported.then(|| Self {
            config: config.clone(),
            packed: PackedCache::default(),
        })
    }

    /// The store's weights packed for this UNet. Runs between two edits share one packing,
    /// and after an edit or an undo only the tensors it touched are packed again: for SD's 860
    /// million weights a whole packing takes seconds, one module's a few milliseconds.
    pub fn weights(&self, store: &WeightStore) -> Result<Arc<Weights>> {
        self.packed.get(store)
    }

    /// Whether a latent of `height x width` cells goes through this UNet.
    pub fn takes(&self, height: usize, width: usize) -> bool {
        let multiple = 1 << (self.config.blocks.len() - 1);
        height * width <= MAX_CELLS
            && height.is_multiple_of(multiple)
            && width.is_multiple_of(multiple)
    }

    /// Computes the cross-attention keys and values of a conditioning `[1, tokens, dim]`.
    pub fn prepare(&self, weights: &Weights, conditioning: &Tensor) -> Result<Context> {
        let (_, tokens, dim) = conditioning.dims3().stage("unet context")?;
        let values = conditioning
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .stage("unet context")?;
        let mut keys_values = HashMap::new();
        for prefix in self.attention_prefixes() {
            for depth in 0..self.depth(&prefix) {
                let attn = format!("{prefix}.transformer_blocks.{depth}.attn2");
                let to_k = weights.matrix(&format!("{attn}.to_k.weight"))?;
                let to_v = weights.matrix(&format!("{attn}.to_v.weight"))?;
                let keys = kernels::linear(&values, tokens, dim, to_k, None)?;
                let vals = kernels::linear(&values, tokens, dim, to_v, None)?;
                keys_values.insert(attn, (keys, vals));
            }
        }
        Ok(Context {
            keys_values,
            tokens,
        })
    }

    /// The UNet's prediction for one latent `[1, C, h, w]` at `timestep`, as `[1, C, h, w]`.
    pub fn forward(
        &self,
        weights: &Weights,
        latent: &Tensor,
        timestep: f64,
        context: &Context,
    ) -> Result<Tensor> {
        let xs = Activation::from_planes(latent, "unet")?;
        let run = Run {
            unet: self,
            weights,
            context,
            temb: self.time_embedding(weights, timestep)?,
        };
        run.network(xs)?.into_planes(latent.device(), "unet")
    }

    /// Every spatial transformer's weight prefix, in network order.
    fn attention_prefixes(&self) -> Vec<String> {
        let blocks = &self.config.blocks;
        let mut prefixes = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            if block.use_cross_attn.is_some() {
                for j in 0..self.config.layers_per_block {
                    prefixes.push(format!("down_blocks.{i}.attentions.{j}"));
                }
            }
        }
        prefixes.push("mid_block.attentions.0".to_string());
        for (i, block) in blocks.iter().rev().enumerate() {
            if block.use_cross_attn.is_some() {
                for j in 0..=self.config.layers_per_block {
                    prefixes.push(format!("up_blocks.{i}.attentions.{j}"));
                }
            }
        }
        prefixes
    }

    /// Transformer blocks in the spatial transformer at `prefix`.
    fn depth(&self, prefix: &str) -> usize {
        let blocks = &self.config.blocks;
        let block = if let Some(rest) = prefix.strip_prefix("down_blocks.") {
            rest.split('.')
                .next()
                .and_then(|i| i.parse().ok())
                .map(|i: usize| &blocks[i])
        } else if let Some(rest) = prefix.strip_prefix("up_blocks.") {
            rest.split('.')
                .next()
                .and_then(|i| i.parse().ok())
                .map(|i: usize| &blocks[blocks.len() - 1 - i])
        } else {
            blocks.last()
        };
        block.and_then(|b| b.use_cross_attn).unwrap_or(1)
    }

    /// The timestep's sinusoidal embedding through the time MLP, then SiLU (every resnet
    /// takes it after SiLU).
    fn time_embedding(&self, weights: &Weights, timestep: f64) -> Result<Vec<f32>> {
        let channels = self.config.blocks[0].out_channels;
        let half = channels / 2;
        let shift = self.config.freq_shift;
        let t = timestep as f32;
        let angles: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = i as f32 * -(10000f64.ln() as f32) / (half as f64 - shift) as f32;
                t * exponent.exp()
            })
            .collect();
        let (cos, sin) = (
            angles.iter().map(|a| a.cos()),
            angles.iter().map(|a| a.sin()),
        );
        let mut emb: Vec<f32> = if self.config.flip_sin_to_cos {
            cos.chain(sin).collect()
        } else {
            sin.chain(cos).collect()
        };
        emb.resize(channels, 0.0);

        let w1 = weights.matrix("time_embedding.linear_1.weight")?;
        let b1 = weights.get("time_embedding.linear_1.bias")?;
        let mut hidden = kernels::linear(&emb, 1, channels, w1, Some(b1))?;
        kernels::silu_in_place(&mut hidden);
        let w2 = weights.matrix("time_embedding.linear_2.weight")?;
        let b2 = weights.get("time_embedding.linear_2.bias")?;
        let mut temb = kernels::linear(&hidden, 1, hidden.len(), w2, Some(b2))?;
        kernels::silu_in_place(&mut temb);
        Ok(temb)
    }
}

/// One UNet call: the network, its weights, the conditioning and the time embedding.
struct Run<'a> {
    unet: &'a CpuUNet,
    weights: &'a Weights,
    context: &'a Context,
    temb: Vec<f32>,
}

/// Activations between layers: token-major values, their grid and channel count.
#[derive(Clone)]
struct Activation {
    values: Vec<f32>,
    grid: Grid,
    channels: usize,
}

impl Activation {
    /// One picture's planes `[1, C, h, w]` as token-major rows.
    fn from_planes(planes: &Tensor, stage: &'static str) -> Result<Self> {
        let (_, channels, height, width) = planes.dims4().stage(stage)?;
        let values = planes
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .stage(stage)?;
        let grid = Grid { height, width };
        Ok(Self {
            values: kernels::transpose(&values, channels, grid.cells()),
            grid,
            channels,
        })
    }

    /// Back to planes `[1, C, h, w]` on `device`.
    fn into_planes(self, device: &candle_core::Device, stage: &'static str) -> Result<Tensor> {
        let planes = kernels::transpose(&self.values, self.grid.cells(), self.channels);
        let shape = (1, self.channels, self.grid.height, self.grid.width);
        Tensor::from_vec(planes, shape, device).stage(stage)
    }
}

impl Run<'_> {
    fn w(&self, name: &str) -> Result<&[f32]> {
        self.weights.get(name)
    }

    fn m(&self, name: &str) -> Result<&Packed> {
        self.weights.matrix(name)
    }

    /// conv_in, down blocks, mid block, up blocks, output head.
    fn network(&self, xs: Activation) -> Result<Activation> {
        let config = &self.unet.config;
        let blocks = &config.blocks;
        let mut xs = self.conv("conv_in", &xs, 1)?;

        // 1. Down: every resnet (and its transformer) leaves a skip, as does every downsampler.
        let mut skips = vec![xs.clone()];
        for (i, block) in blocks.iter().enumerate() {
            for j in 0..config.layers_per_block {
                xs = self.resnet(&format!("down_blocks.{i}.resnets.{j}"), &xs, false)?;
                if block.use_cross_attn.is_some() {
                    let prefix = format!("down_blocks.{i}.attentions.{j}");
                    xs = self.transformer(&prefix, &xs, block.attention_head_dim)?;
                }
                skips.push(xs.clone());
            }
            if i + 1 < blocks.len() {
                xs = self.conv(&format!("down_blocks.{i}.downsamplers.0.conv"), &xs, 2)?;
                skips.push(xs.clone());
            }
        }

        // 2. Mid: resnet, transformer, resnet, over the last block's heads.
        let last = blocks[blocks.len() - 1];
        xs = self.resnet("mid_block.resnets.0", &xs, true)?;
        xs = self.transformer("mid_block.attentions.0", &xs, last.attention_head_dim)?;
        xs = self.resnet("mid_block.resnets.1", &xs, true)?;

        // 3. Up: each resnet takes the latest skip beside the activation.
        for (i, block) in blocks.iter().rev().enumerate() {
            for j in 0..=config.layers_per_block {
                let skip = skips
                    .pop()
                    .ok_or_else(|| EngineError::InvalidRequest("UNet skips ran out".to_string()))?;
                xs = concat_channels(&xs, &skip);
                xs = self.resnet(&format!("up_blocks.{i}.resnets.{j}"), &xs, false)?;
                if block.use_cross_attn.is_some() {
                    let prefix = format!("up_blocks.{i}.attentions.{j}");
                    xs = self.transformer(&prefix, &xs, block.attention_head_dim)?;
                }
            }
            if i + 1 < blocks.len() {
                let (values, grid) = kernels::upsample2(&xs.values, xs.grid, xs.channels);
                xs = Activation {
                    values,
                    grid,
                    channels: xs.channels,
                };
                xs = self.conv(&format!("up_blocks.{i}.upsamplers.0.conv"), &xs, 1)?;
            }
        }

        // 4. Output head.
        output_head(
            self.weights,
            "",
            xs,
            config.norm_num_groups,
            config.norm_eps,
        )
    }

    /// A 3x3 convolution with padding 1.
    fn conv(&self, prefix: &str, xs: &Activation, stride: usize) -> Result<Activation> {
        conv(self.weights, prefix, xs, stride)
    }

    /// A resnet block: norm, SiLU, conv, plus the time embedding, norm, SiLU, conv, plus the
    /// shortcut. Mid-block resnets use the config's groups and output scale.
    fn resnet(&self, prefix: &str, xs: &Activation, mid: bool) -> Result<Activation> {
        let config = &self.unet.config;
        let (groups, scale) = if mid {
            (config.norm_num_groups, config.mid_block_scale_factor)
        } else {
            (BLOCK_RESNET_GROUPS, 1.0)
        };
        let resnet = Resnet {
            groups,
            eps: config.norm_eps,
            time: Some(&self.temb),
            scale,
        };
        resnet.forward(self.weights, prefix, xs)
    }

    /// A spatial transformer: group norm, projection in, transformer blocks, projection out,
    /// plus the input.
    fn transformer(&self, prefix: &str, xs: &Activation, heads: usize) -> Result<Activation> {
        let cells = xs.grid.cells();
        let normed = kernels::group_norm(
            &xs.values,
            xs.channels,
            self.unet.config.norm_num_groups,
            1e-6,
            self.w(&format!("{prefix}.norm.weight"))?,
            self.w(&format!("{prefix}.norm.bias"))?,
            false,
        );
        let proj_in = self.m(&format!("{prefix}.proj_in.weight"))?;
        let inner = proj_in.outputs();
        let mut hidden = kernels::linear(
            &normed,
            cells,
            xs.channels,
            proj_in,
            Some(self.w(&format!("{prefix}.proj_in.bias"))?),
        )?;
        for depth in 0..self.unet.depth(prefix) {
            let block = format!("{prefix}.transformer_blocks.{depth}");
            self.transformer_block(&block, &mut hidden, cells, inner, heads)?;
        }
        let mut out = kernels::linear(
            &hidden,
            cells,
            inner,
            self.m(&format!("{prefix}.proj_out.weight"))?,
            Some(self.w(&format!("{prefix}.proj_out.bias"))?),
        )?;
        kernels::add_in_place(&mut out, &xs.values);
        Ok(Activation {
            values: out,
            ..xs.clone()
        })
    }

    /// Self-attention, cross-attention and the GEGLU feed-forward, each after a layer norm and
    /// added to the stream.
    fn transformer_block(
        &self,
        block: &str,
        hidden: &mut [f32],
        cells: usize,
        dim: usize,
        heads: usize,
    ) -> Result<()> {
        let norm = |name: &str, xs: &[f32]| -> Result<Vec<f32>> {
            Ok(kernels::layer_norm(
                xs,
                dim,
                self.w(&format!("{block}.{name}.weight"))?,
                self.w(&format!("{block}.{name}.bias"))?,
            ))
        };

        // Self-attention.
        let normed = norm("norm1", hidden)?;
        let attn = format!("{block}.attn1");
        let project = |name: &str| -> Result<Vec<f32>> {
            let weight = self.m(&format!("{attn}.{name}.weight"))?;
            kernels::linear(&normed, cells, dim, weight, None)
        };
        let (keys, vals) = (project("to_k")?, project("to_v")?);
        let out = self.attention(&attn, &normed, cells, (&keys, &vals, cells), heads)?;
        kernels::add_in_place(hidden, &out);

        // Cross-attention over the prepared conditioning.
        let normed = norm("norm2", hidden)?;
        let attn = format!("{block}.attn2");
        let (keys, vals) = self.context.keys_values.get(&attn).ok_or_else(|| {
            EngineError::InvalidRequest(format!("no prepared conditioning for {attn}"))
        })?;
        let tokens = self.context.tokens;
        let out = self.attention(&attn, &normed, cells, (keys, vals, tokens), heads)?;
        kernels::add_in_place(hidden, &out);

        // Feed-forward.
        let normed = norm("norm3", hidden)?;
        let proj = self.m(&format!("{block}.ff.net.0.proj.weight"))?;
        let gated = kernels::linear(
            &normed,
            cells,
            dim,
            proj,
            Some(self.w(&format!("{block}.ff.net.0.proj.bias"))?),
        )?;
        let inner = proj.outputs() / 2;
        let activated = kernels::geglu(&gated, inner);
        let out = kernels::linear(
            &activated,
            cells,
            inner,
            self.m(&format!("{block}.ff.net.2.weight"))?,
            Some(self.w(&format!("{block}.ff.net.2.bias"))?),
        )?;
        kernels::add_in_place(hidden, &out);
        Ok(())
    }

    /// Multi-head attention of `normed` queries over `(keys, values, tokens)`, through the
    /// output projection.
    fn attention(
        &self,
        attn: &str,
        normed: &[f32],
        cells: usize,
        (keys, values, tokens): (&[f32], &[f32], usize),
        heads: usize,
    ) -> Result<Vec<f32>> {
        let to_q = self.m(&format!("{attn}.to_q.weight"))?;
        let inner = to_q.outputs();
        let head_dim = inner / heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut queries = kernels::linear(normed, cells, normed.len() / cells, to_q, None)?;
        queries.iter_mut().for_each(|q| *q *= scale);

        let mut mixed = vec![0.0; cells * inner];
        for head in 0..heads {
            let offset = head * head_dim;
            let q = Mat::column_block(&queries, cells, inner, offset, head_dim);
            let k = Mat::column_block(keys, tokens, inner, offset, head_dim);
            let v = Mat::column_block(values, tokens, inner, offset, head_dim);
            kernels::attend(&mut mixed[offset..], inner, q, k, v);
        }
        kernels::linear(
            &mixed,
            cells,
            inner,
            self.m(&format!("{attn}.to_out.0.weight"))?,
            Some(self.w(&format!("{attn}.to_out.0.bias"))?),
        )
    }
}

/// A 3x3 convolution with padding 1, weights `{prefix}.weight` and `{prefix}.bias`.
fn conv(weights: &Weights, prefix: &str, xs: &Activation, stride: usize) -> Result<Activation> {
    let bias = weights.get(&format!("{prefix}.bias"))?;
    let (values, grid) = kernels::conv3x3(
        &xs.values,
        xs.grid,
        xs.channels,
        weights.matrix(&format!("{prefix}.weight"))?,
        bias,
        stride,
    )?;
    Ok(Activation {
        values,
        grid,
        channels: bias.len(),
    })
}

/// `{prefix}conv_norm_out` (a group norm with SiLU), then the 3x3 `{prefix}conv_out`: the last
/// layers of the UNet and of the VAE's decoder.
fn output_head(
    weights: &Weights,
    prefix: &str,
    xs: Activation,
    groups: usize,
    eps: f64,
) -> Result<Activation> {
    let normed = kernels::group_norm(
        &xs.values,
        xs.channels,
        groups,
        eps,
        weights.get(&format!("{prefix}conv_norm_out.weight"))?,
        weights.get(&format!("{prefix}conv_norm_out.bias"))?,
        true,
    );
    let xs = Activation {
        values: normed,
        ..xs
    };
    conv(weights, &format!("{prefix}conv_out"), &xs, 1)
}

/// What differs between the resnets of the UNet and of the VAE's decoder.
struct Resnet<'a> {
    /// Groups of both group norms.
    groups: usize,
    /// Their epsilon.
    eps: f64,
    /// The time embedding after SiLU, for resnets that take it (`time_emb_proj`).
    time: Option<&'a [f32]>,
    /// The output is divided by this.
    scale: f64,
}

impl Resnet<'_> {
    /// Norm, SiLU, conv, plus the projected time embedding, norm, SiLU, conv, plus the
    /// shortcut, over the scale.
    fn forward(&self, weights: &Weights, prefix: &str, xs: &Activation) -> Result<Activation> {
        let norm = |name: &str, xs: &Activation| -> Result<Vec<f32>> {
            Ok(kernels::group_norm(
                &xs.values,
                xs.channels,
                self.groups,
                self.eps,
                weights.get(&format!("{prefix}.{name}.weight"))?,
                weights.get(&format!("{prefix}.{name}.bias"))?,
                true,
            ))
        };

        let hidden = Activation {
            values: norm("norm1", xs)?,
            ..xs.clone()
        };
        let mut hidden = conv(weights, &format!("{prefix}.conv1"), &hidden, 1)?;
        if let Some(time) = self.time {
            let time_bias = kernels::linear(
                time,
                1,
                time.len(),
                weights.matrix(&format!("{prefix}.time_emb_proj.weight"))?,
                Some(weights.get(&format!("{prefix}.time_emb_proj.bias"))?),
            )?;
            for row in hidden.values.chunks_exact_mut(hidden.channels) {
                kernels::add_in_place(row, &time_bias);
            }
        }
        hidden.values = norm("norm2", &hidden)?;
        let mut out = conv(weights, &format!("{prefix}.conv2"), &hidden, 1)?;

        // As in candle's resnet: a 1x1 projection exactly when the channel count changes (a
        // checkpoint may hold other, unused tensors of that name).
        let shortcut = format!("{prefix}.conv_shortcut");
        if xs.channels != out.channels {
            let projected = kernels::linear(
                &xs.values,
                xs.grid.cells(),
                xs.channels,
                weights.matrix(&format!("{shortcut}.weight"))?,
                Some(weights.get(&format!("{shortcut}.bias"))?),
            )?;
            kernels::add_in_place(&mut out.values, &projected);
        } else {
            kernels::add_in_place(&mut out.values, &xs.values);
        }
        if self.scale != 1.0 {
            let inv = self.scale as f32;
            out.values.iter_mut().for_each(|v| *v /= inv);
        }
        Ok(out)
    }
}

/// `[xs | skip]` along channels, cell by cell.
fn concat_channels(xs: &Activation, skip: &Activation) -> Activation {
    let channels = xs.channels + skip.channels;
    let mut values = Vec::with_capacity(xs.grid.cells() * channels);
    for (a, b) in xs
        .values
        .chunks_exact(xs.channels)
        .zip(skip.values.chunks_exact(skip.channels))
    {
        values.extend_from_slice(a);
        values.extend_from_slice(b);
    }
    Activation {
        values,
        grid: xs.grid,
        channels,
    }
}

#[cfg(test)]
mod tests;
