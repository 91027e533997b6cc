//! The UNet's transformer: `SpatialTransformer` (diffusers' `Transformer2DModel`) with its
//! self-attention, cross-attention on the text embedding, and GEGLU feed-forward.
//!
//! Tensor names and arithmetic follow candle-transformers' `stable_diffusion::attention`,
//! except that softmax and layer norm are composed of differentiable ops, and that flash and
//! sliced attention are not offered (sliced attention computes the same values in pieces).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{GroupNorm, Linear, VarBuilder};

use super::layers::{Conv2d, LayerNorm, conv2d, group_norm, softmax_last_dim};

/// Multi-head attention of a sequence on itself or on a context (`to_q`, `to_k`, `to_v`,
/// `to_out.0`).
#[derive(Debug)]
struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    scale: f64,
}

impl CrossAttention {
    fn new(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: Option<usize>,
        heads: usize,
        dim_head: usize,
    ) -> Result<Self> {
        let inner_dim = dim_head * heads;
        let context_dim = context_dim.unwrap_or(query_dim);
        Ok(Self {
            to_q: candle_nn::linear_no_bias(query_dim, inner_dim, vb.pp("to_q"))?,
            to_k: candle_nn::linear_no_bias(context_dim, inner_dim, vb.pp("to_k"))?,
            to_v: candle_nn::linear_no_bias(context_dim, inner_dim, vb.pp("to_v"))?,
            to_out: candle_nn::linear(inner_dim, query_dim, vb.pp("to_out.0"))?,
            heads,
            scale: 1. / (dim_head as f64).sqrt(),
        })
    }

    /// `[batch, seq, heads * d]` to `[batch * heads, seq, d]`.
    fn heads_to_batch(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, seq, dim) = xs.dims3()?;
        xs.reshape((batch, seq, self.heads, dim / self.heads))?
            .transpose(1, 2)?
            .reshape((batch * self.heads, seq, dim / self.heads))
    }

    /// `[batch * heads, seq, d]` to `[batch, seq, heads * d]`.
    fn batch_to_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch_heads, seq, dim) = xs.dims3()?;
        let batch = batch_heads / self.heads;
        xs.reshape((batch, self.heads, seq, dim))?
            .transpose(1, 2)?
            .reshape((batch, seq, dim * self.heads))
    }

    fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(xs);
        let query = self.heads_to_batch(&self.to_q.forward(xs)?)?;
        let key = self.heads_to_batch(&self.to_k.forward(context)?)?;
        let value = self.heads_to_batch(&self.to_v.forward(context)?)?;

        let scores = query.matmul(&(key.t()? * self.scale)?)?;
        let xs = softmax_last_dim(&scores)?.matmul(&value)?;
        self.to_out.forward(&self.batch_to_heads(&xs)?)
    }
}

/// Feed-forward `net.0.proj` (GEGLU, to 2 x 4 x dim) then `net.2` (back to dim).
///
/// Like candle-transformers, the gate uses the tanh approximation of GELU
/// (`Tensor::gelu`), where diffusers uses the exact erf form.
#[derive(Debug)]
struct FeedForward {
    geglu_proj: Linear,
    linear: Linear,
}

impl FeedForward {
    fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner_dim = dim * 4;
        let vb = vb.pp("net");
        Ok(Self {
            geglu_proj: candle_nn::linear(dim, inner_dim * 2, vb.pp("0").pp("proj"))?,
            linear: candle_nn::linear(inner_dim, dim, vb.pp("2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let hidden_and_gate = self.geglu_proj.forward(xs)?.chunk(2, D::Minus1)?;
        let xs = (&hidden_and_gate[0] * hidden_and_gate[1].gelu()?)?;
        self.linear.forward(&xs)
    }
}

/// Pre-norm transformer block: self-attention, cross-attention, feed-forward.
#[derive(Debug)]
struct BasicTransformerBlock {
    attn1: CrossAttention,
    ff: FeedForward,
    attn2: CrossAttention,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
}

impl BasicTransformerBlock {
    fn new(
        vb: VarBuilder,
        dim: usize,
        heads: usize,
        dim_head: usize,
        context_dim: usize,
    ) -> Result<Self> {
        Ok(Self {
            attn1: CrossAttention::new(vb.pp("attn1"), dim, None, heads, dim_head)?,
            ff: FeedForward::new(vb.pp("ff"), dim)?,
            attn2: CrossAttention::new(vb.pp("attn2"), dim, Some(context_dim), heads, dim_head)?,
            norm1: LayerNorm::new(dim, 1e-5, vb.pp("norm1"))?,
            norm2: LayerNorm::new(dim, 1e-5, vb.pp("norm2"))?,
            norm3: LayerNorm::new(dim, 1e-5, vb.pp("norm3"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self
            .attn2
            .forward(&self.norm2.forward(&xs)?, Some(context))?
            + xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + xs
    }
}

/// The 1x1 projection into and out of the transformer: a convolution, or a linear layer when
/// the configuration sets `use_linear_projection`.
#[derive(Debug)]
enum Proj {
    Conv(Conv2d),
    Linear(Linear),
}

/// Settings of one [`SpatialTransformer`].
#[derive(Debug, Clone, Copy)]
pub struct SpatialTransformerConfig {
    /// Channels of the feature map it attends over.
    pub channels: usize,
    /// Number of attention heads; the head width is `channels / heads`.
    pub heads: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Group count of the input group norm (eps is fixed at 1e-6).
    pub num_groups: usize,
    /// Width of the text embedding attended to.
    pub context_dim: usize,
    /// Linear instead of 1x1 convolution projections.
    pub use_linear_projection: bool,
}

/// Group norm, projection in, transformer blocks over the pixels as a sequence, projection
/// out, plus the input: `norm`, `proj_in`, `transformer_blocks.{i}`, `proj_out`.
#[derive(Debug)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Proj,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Proj,
}

impl SpatialTransformer {
    /// Creates the transformer's tensors under `vb`.
    pub fn new(vb: VarBuilder, cfg: SpatialTransformerConfig) -> Result<Self> {
        let channels = cfg.channels;
        let dim_head = channels / cfg.heads;
        let inner_dim = cfg.heads * dim_head;
        let norm = group_norm(cfg.num_groups, channels, 1e-6, vb.pp("norm"))?;
        let (proj_in, proj_out) = if cfg.use_linear_projection {
            // candle-transformers creates proj_out as (in: channels, out: inner_dim); the two are
            // equal because the caller checked channels % heads == 0.
            (
                Proj::Linear(candle_nn::linear(channels, inner_dim, vb.pp("proj_in"))?),
                Proj::Linear(candle_nn::linear(channels, inner_dim, vb.pp("proj_out"))?),
            )
        } else {
            (
                Proj::Conv(conv2d(channels, inner_dim, 1, 0, 1, vb.pp("proj_in"))?),
                Proj::Conv(conv2d(inner_dim, channels, 1, 0, 1, vb.pp("proj_out"))?),
            )
        };
        let vb_blocks = vb.pp("transformer_blocks");
        let transformer_blocks = (0..cfg.depth)
            .map(|i| {
                let vb = vb_blocks.pp(i.to_string());
                BasicTransformerBlock::new(vb, inner_dim, cfg.heads, dim_head, cfg.context_dim)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm,
            proj_in,
            transformer_blocks,
            proj_out,
        })
    }

    /// Runs on `xs` (`[batch, channels, h, w]`) attending to `context`
    /// (`[batch, seq, context_dim]`).
    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (batch, _, height, width) = xs.dims4()?;
        let residual = xs;
        let xs = self.norm.forward(xs)?;

        // Pixels become a sequence: [batch, h * w, inner_dim].
        let to_sequence = |xs: &Tensor| {
            let dim = xs.dim(1)?;
            xs.permute((0, 2, 3, 1))?
                .reshape((batch, height * width, dim))
        };
        let mut xs = match &self.proj_in {
            Proj::Conv(p) => to_sequence(&p.forward(&xs)?)?,
            Proj::Linear(p) => p.forward(&to_sequence(&xs)?)?,
        };
        for block in &self.transformer_blocks {
            xs = block.forward(&xs, context)?;
        }

        // And back to a feature map.
        let to_map = |xs: &Tensor| {
            let dim = xs.dim(D::Minus1)?;
            xs.reshape((batch, height, width, dim))?
                .permute((0, 3, 1, 2))
        };
        let xs = match &self.proj_out {
            Proj::Conv(p) => p.forward(&to_map(&xs)?)?,
            Proj::Linear(p) => to_map(&p.forward(&xs)?)?,
        };
        xs + residual
    }
}
