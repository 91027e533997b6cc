//! The trainable text encoder: the same CLIP text transformer, tensor names and shapes as
//! candle-transformers' `ClipTextTransformer`, built from differentiable ops.
//!
//! Build it on `vb.pp("text_model")`, where transformers' `CLIPTextModel` safetensors keep the
//! transformer. Its output is the whole last hidden state after `final_layer_norm`, computed
//! with a causal mask, as `ClipTextTransformer::forward_with_mask(ids, usize::MAX)` returns it.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{Activation, ClipTextConfig};

use super::ModuleConfigError;
use super::layers::{LayerNorm, softmax_last_dim};

/// Epsilon of every layer norm in the CLIP text transformer.
const CLIP_NORM_EPS: f64 = 1e-5;

/// Causal multi-head self-attention (`q_proj`, `k_proj`, `v_proj`, `out_proj`).
#[derive(Debug)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    scale: f64,
}

impl SelfAttention {
    fn new(vb: VarBuilder, dim: usize, heads: usize) -> Result<Self> {
        let linear = |name| candle_nn::linear(dim, dim, vb.pp(name));
        Ok(Self {
            q_proj: linear("q_proj")?,
            k_proj: linear("k_proj")?,
            v_proj: linear("v_proj")?,
            out_proj: linear("out_proj")?,
            heads,
            scale: ((dim / heads) as f64).powf(-0.5),
        })
    }

    /// `[batch, seq, dim]` to `[batch, heads, seq, dim / heads]`.
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, seq, dim) = xs.dims3()?;
        xs.reshape((batch, seq, self.heads, dim / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn forward(&self, xs: &Tensor, causal_mask: &Tensor) -> Result<Tensor> {
        let (batch, seq, dim) = xs.dims3()?;
        let query = self.split_heads(&(self.q_proj.forward(xs)? * self.scale)?)?;
        let key = self.split_heads(&self.k_proj.forward(xs)?)?;
        let value = self.split_heads(&self.v_proj.forward(xs)?)?;

        let scores = query.matmul(&key.t()?)?.broadcast_add(causal_mask)?;
        let xs = softmax_last_dim(&scores)?.matmul(&value)?;
        let xs = xs.transpose(1, 2)?.reshape((batch, seq, dim))?;
        self.out_proj.forward(&xs)
    }
}

/// Pre-norm encoder layer: attention and MLP (`fc1`, activation, `fc2`), each with a residual.
#[derive(Debug)]
struct EncoderLayer {
    self_attn: SelfAttention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
    layer_norm2: LayerNorm,
}

impl EncoderLayer {
    fn new(vb: VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let dim = c.embed_dim;
        let mlp = vb.pp("mlp");
        Ok(Self {
            self_attn: SelfAttention::new(vb.pp("self_attn"), dim, c.num_attention_heads)?,
            layer_norm1: LayerNorm::new(dim, CLIP_NORM_EPS, vb.pp("layer_norm1"))?,
            fc1: candle_nn::linear(dim, c.intermediate_size, mlp.pp("fc1"))?,
            fc2: candle_nn::linear(c.intermediate_size, dim, mlp.pp("fc2"))?,
            activation: c.activation,
            layer_norm2: LayerNorm::new(dim, CLIP_NORM_EPS, vb.pp("layer_norm2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, causal_mask: &Tensor) -> Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.layer_norm1.forward(xs)?, causal_mask)?;
        let xs = (attn + xs)?;
        let hidden = self.fc1.forward(&self.layer_norm2.forward(&xs)?)?;
        let hidden = match self.activation {
            // Same op as candle-transformers; candle-nn's sigmoid has a backward pass.
            Activation::QuickGelu => (&hidden * candle_nn::ops::sigmoid(&(&hidden * 1.702)?)?)?,
        };
        self.fc2.forward(&hidden)? + xs
    }
}

/// Trainable counterpart of `ClipTextTransformer` (the `text_encoder` of a diffusers
/// pipeline).
#[derive(Debug)]
pub struct TrainTextEncoder {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    max_position_embeddings: usize,
}

impl TrainTextEncoder {
    /// Creates (from a `VarMap`-backed `vb`) or loads the transformer's tensors, named as
    /// `ClipTextTransformer::new(vb, config)` names them; pass `vb.pp("text_model")`.
    pub fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let c = config;
        if c.num_attention_heads == 0 || !c.embed_dim.is_multiple_of(c.num_attention_heads) {
            return Err(candle_core::Error::wrap(ModuleConfigError::Invalid {
                module: "text_encoder",
                reason: format!(
                    "embed_dim {} does not divide into {} attention heads",
                    c.embed_dim, c.num_attention_heads
                ),
            }));
        }
        let vb_emb = vb.pp("embeddings");
        let token_embedding =
            candle_nn::embedding(c.vocab_size, c.embed_dim, vb_emb.pp("token_embedding"))?;
        let position_embedding = candle_nn::embedding(
            c.max_position_embeddings,
            c.embed_dim,
            vb_emb.pp("position_embedding"),
        )?;
        let vb_layers = vb.pp("encoder").pp("layers");
        let layers = (0..c.num_hidden_layers)
            .map(|i| EncoderLayer::new(vb_layers.pp(i.to_string()), c))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm =
            LayerNorm::new(c.embed_dim, CLIP_NORM_EPS, vb.pp("final_layer_norm"))?;
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            max_position_embeddings: c.max_position_embeddings,
        })
    }

    /// Encodes token ids (`[batch, seq]`, u32, `seq <= max_position_embeddings`) to the last
    /// hidden state (`[batch, seq, embed_dim]`).
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, seq) = input_ids.dims2()?;
        if seq > self.max_position_embeddings {
            return Err(candle_core::Error::wrap(ModuleConfigError::Invalid {
                module: "text_encoder",
                reason: format!(
                    "{seq} tokens exceed max_position_embeddings {}",
                    self.max_position_embeddings
                ),
            }));
        }

        // Token plus position embeddings.
        let positions = Tensor::arange(0u32, seq as u32, input_ids.device())?;
        let xs = self.token_embedding.forward(input_ids)?;
        let xs = xs.broadcast_add(&self.position_embedding.forward(&positions)?)?;

        let causal_mask = causal_mask(seq, input_ids.device())?.to_dtype(xs.dtype())?;
        let mut xs = xs;
        for layer in &self.layers {
            xs = layer.forward(&xs, &causal_mask)?;
        }
        self.final_layer_norm.forward(&xs)
    }
}

/// `[seq, seq]` additive mask: 0 where a token may attend, `f32::MIN` on future tokens.
fn causal_mask(seq: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::MIN } else { 0. }))
        .collect();
    Tensor::from_vec(mask, (seq, seq), device)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, IndexOp};
    use candle_nn::VarMap;
    use candle_transformers::models::clip::text_model::ClipTextTransformer;

    use super::super::test_support::{
        assert_close, assert_gradient_matches_finite_difference, assert_trains, named_tensors,
        perturb_vectors, recording_builder,
    };
    use super::*;

    fn small_config() -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: 49408,
            embed_dim: 32,
            activation: Activation::QuickGelu,
            intermediate_size: 64,
            max_position_embeddings: 77,
            pad_with: None,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            projection_dim: 32,
        }
    }

    fn random_ids(batch: usize, seq: usize) -> Result<Tensor> {
        let ids = Tensor::rand(0f32, 49407., (batch, seq), &Device::Cpu)?;
        ids.to_dtype(DType::U32)
    }

    #[test]
    fn text_encoder_matches_candle_transformers() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = small_config();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let ours = TrainTextEncoder::new(vb.pp("text_model"), &cfg)?;
        perturb_vectors(&varmap)?;

        // candle-transformers' module on exactly our tensors, asking for exactly our names.
        let (vb, requested) = recording_builder(named_tensors(&varmap));
        let candle = ClipTextTransformer::new(vb.pp("text_model"), &cfg)?;
        requested.assert_same_names(&varmap);
        assert!(
            requested
                .names()
                .contains("text_model.final_layer_norm.weight")
        );

        // Full-length and short prompts, so that the mask is exercised at several lengths.
        for seq in [77, 9] {
            let ids = random_ids(2, seq)?;
            let expected = candle.forward_with_mask(&ids, usize::MAX)?;
            let actual = ours.forward(&ids)?;
            assert_eq!(actual.dims(), [2, seq, 32]);
            assert_close(&actual, &expected, 1e-4)?;
        }
        Ok(())
    }

    #[test]
    fn text_encoder_output_is_causal() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let ours = TrainTextEncoder::new(vb.pp("text_model"), &small_config())?;
        let ids = random_ids(1, 12)?;
        let changed = Tensor::cat(&[ids.i((.., ..8))?, random_ids(1, 4)?], 1)?;
        let (a, b) = (ours.forward(&ids)?, ours.forward(&changed)?);
        assert_close(&a.i((.., ..8))?, &b.i((.., ..8))?, 1e-6)?;
        Ok(())
    }

    #[test]
    fn text_encoder_trains() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let ours = TrainTextEncoder::new(vb.pp("text_model"), &small_config())?;

        // Every token of the vocabulary the batch uses gets a gradient row; the embedding
        // table as a whole must receive a gradient.
        let ids = random_ids(2, 16)?;
        let target = Tensor::randn(0f32, 1., (2, 16, 32), &dev)?;
        assert_trains(&varmap, 1e-2, || {
            candle_nn::loss::mse(&ours.forward(&ids)?, &target)
        })
    }

    #[test]
    fn text_encoder_gradient_matches_finite_difference() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
        let ours = TrainTextEncoder::new(vb.pp("text_model"), &small_config())?;
        perturb_vectors(&varmap)?;
        let ids = random_ids(2, 16)?;
        let target = Tensor::randn(0f64, 1., (2, 16, 32), &dev)?;
        assert_gradient_matches_finite_difference(&varmap, || {
            candle_nn::loss::mse(&ours.forward(&ids)?, &target)
        })
    }

    #[test]
    fn text_encoder_rejects_too_many_tokens() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let ours = TrainTextEncoder::new(vb.pp("text_model"), &small_config())?;
        assert!(ours.forward(&random_ids(1, 78)?).is_err());
        Ok(())
    }
}
