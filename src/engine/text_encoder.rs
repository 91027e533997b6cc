//! The text encoder: transformers' `text_encoder/config.json` and the CLIP text model over it.
//!
//! Stable Diffusion 1.x uses OpenAI's CLIP ViT-L/14 text model (quick GELU); 2.x uses
//! OpenCLIP's ViT-H/14 (exact, erf-based GELU), exported to transformers' layout with its last
//! layer dropped. candle-transformers has a quick-GELU model whose config can take any width
//! (`clip::text_model`), which runs SD 1.x and the embedded model. Its GELU model
//! (`stable_diffusion::clip`) only comes in fixed sizes (its config fields are private) and uses
//! the tanh approximation of GELU where transformers' `"gelu"` is exact, so the GELU encoder is
//! written here: same keys, any width, the activation the config names.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation as CandleActivation, ClipTextConfig, ClipTextTransformer,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::error::{EngineError, Result};

/// The activation of the text encoder's MLPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextActivation {
    /// `x * sigmoid(1.702 x)`: OpenAI CLIP, SD 1.x.
    QuickGelu,
    /// Exact GELU: OpenCLIP, SD 2.x, transformers' `"gelu"`.
    Gelu,
    /// GELU's tanh approximation: transformers' `"gelu_new"` / `"gelu_pytorch_tanh"`.
    GeluTanh,
}

impl TextActivation {
    /// Parses transformers' `hidden_act`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "quick_gelu" => Self::QuickGelu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            _ => return None,
        })
    }

    fn forward(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
        }
    }
}

/// transformers' `text_encoder/config.json` for a CLIP text model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoderJson {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states (the conditioning's last dimension).
    pub hidden_size: usize,
    /// Width of the MLPs.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Sequence length.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// `quick_gelu` (SD 1.x) or `gelu` (SD 2.x).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Epsilon of the layer norms.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Width of the projection (unused for conditioning).
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// transformers' class names, e.g. `["CLIPTextModel"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
}

fn default_positions() -> usize {
    77
}
fn default_act() -> String {
    "quick_gelu".to_string()
}
fn default_eps() -> f64 {
    1e-5
}

/// The transformers classes whose weights this encoder reads.
const KNOWN_ARCHITECTURES: [&str; 2] = ["CLIPTextModel", "CLIPTextModelWithProjection"];

impl TextEncoderJson {
    /// Checks the config: a CLIP text model with an activation and head split that work.
    pub fn validate(&self, path: &Path) -> Result<TextActivation> {
        if let Some(arch) = self
            .architectures
            .iter()
            .flatten()
            .find(|a| !KNOWN_ARCHITECTURES.contains(&a.as_str()))
        {
            return Err(EngineError::file(
                format!(
                    "unknown text encoder architecture {arch}; known: {}",
                    KNOWN_ARCHITECTURES.join(", ")
                ),
                path,
            ));
        }
        let activation = TextActivation::parse(&self.hidden_act).ok_or_else(|| {
            EngineError::file(
                format!(
                    "text encoder activation {} is not supported (quick_gelu, gelu, gelu_new)",
                    self.hidden_act
                ),
                path,
            )
        })?;
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(EngineError::file(
                format!(
                    "hidden_size {} does not split into {} heads",
                    self.hidden_size, self.num_attention_heads
                ),
                path,
            ));
        }
        Ok(activation)
    }

    /// candle-transformers' config for the quick-GELU CLIP text model; other activations are
    /// refused, naming `path`.
    pub fn to_candle(&self, path: &Path) -> Result<ClipTextConfig> {
        match self.validate(path)? {
            TextActivation::QuickGelu => Ok(self.quick_gelu_config()),
            _ => Err(EngineError::file(
                format!(
                    "candle-transformers' CLIP text model has no {} activation",
                    self.hidden_act
                ),
                path,
            )),
        }
    }

    fn quick_gelu_config(&self) -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: self.vocab_size,
            embed_dim: self.hidden_size,
            activation: CandleActivation::QuickGelu,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            projection_dim: self.projection_dim.unwrap_or(self.hidden_size),
        }
    }
}

/// A CLIP text encoder; its output is the last hidden state after the final layer norm.
pub enum TextEncoder {
    /// candle-transformers' quick-GELU model (SD 1.x, the embedded model).
    QuickGelu(ClipTextTransformer),
    /// This module's model, for every other activation (SD 2.x).
    Clip(ClipText),
}

impl TextEncoder {
    /// Builds the encoder for a config; `vb` is at the root of `model.safetensors`.
    pub fn new(vb: VarBuilder, config: &TextEncoderJson, path: &Path) -> Result<Self> {
        let activation = config.validate(path)?;
        let built = match activation {
            TextActivation::QuickGelu => {
                ClipTextTransformer::new(vb.pp("text_model"), &config.quick_gelu_config())
                    .map(Self::QuickGelu)
            }
            other => ClipText::new(vb.pp("text_model"), config, other).map(Self::Clip),
        };
        built.map_err(|source| EngineError::Candle {
            stage: "build text encoder",
            source,
        })
    }

    /// Encodes token ids `[batch, seq]` into hidden states `[batch, seq, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu(m) => m.forward_with_mask(ids, usize::MAX),
            Self::Clip(m) => m.forward(ids),
        }
    }
}

/// A CLIP text transformer of any width and activation, over transformers' key names.
pub struct ClipText {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<ClipLayer>,
    final_layer_norm: LayerNorm,
    activation: TextActivation,
    num_heads: usize,
}

/// One pre-norm transformer layer.
struct ClipLayer {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm1: LayerNorm,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl ClipText {
    /// Builds the model; `vb` points at `text_model`.
    pub fn new(
        vb: VarBuilder,
        c: &TextEncoderJson,
        activation: TextActivation,
    ) -> candle_core::Result<Self> {
        let width = c.hidden_size;
        let norm = |vb: VarBuilder| candle_nn::layer_norm(width, c.layer_norm_eps, vb);
        let embeddings = vb.pp("embeddings");
        let token_embedding =
            candle_nn::embedding(c.vocab_size, width, embeddings.pp("token_embedding"))?;
        let position_embedding = candle_nn::embedding(
            c.max_position_embeddings,
            width,
            embeddings.pp("position_embedding"),
        )?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layers.{i}"));
                let attn = vb.pp("self_attn");
                let proj = |name: &str| candle_nn::linear(width, width, attn.pp(name));
                Ok(ClipLayer {
                    q_proj: proj("q_proj")?,
                    k_proj: proj("k_proj")?,
                    v_proj: proj("v_proj")?,
                    out_proj: proj("out_proj")?,
                    layer_norm1: norm(vb.pp("layer_norm1"))?,
                    layer_norm2: norm(vb.pp("layer_norm2"))?,
                    fc1: candle_nn::linear(width, c.intermediate_size, vb.pp("mlp.fc1"))?,
                    fc2: candle_nn::linear(c.intermediate_size, width, vb.pp("mlp.fc2"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm: norm(vb.pp("final_layer_norm"))?,
            activation,
            num_heads: c.num_attention_heads,
        })
    }

    /// Hidden states after the final layer norm, `[batch, seq, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (_, seq) = ids.dims2()?;
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?;
        let mut xs = self
            .token_embedding
            .forward(ids)?
            .broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = causal_mask(seq, xs.dtype(), ids.device())?;
        for layer in &self.layers {
            let residual = xs.clone();
            let attended = self.attention(layer, &layer.layer_norm1.forward(&xs)?, &mask)?;
            xs = (attended + residual)?;
            let residual = xs.clone();
            let hidden = layer.fc1.forward(&layer.layer_norm2.forward(&xs)?)?;
            let hidden = layer.fc2.forward(&self.activation.forward(&hidden)?)?;
            xs = (hidden + residual)?;
        }
        self.final_layer_norm.forward(&xs)
    }

    fn attention(&self, l: &ClipLayer, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq, width) = xs.dims3()?;
        let head_dim = width / self.num_heads;
        // Heads fold into the batch, and every operand is made contiguous: candle's CPU matmul
        // mishandles some transposed batched layouts.
        let heads = |t: Tensor| {
            t.reshape((batch, seq, self.num_heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((batch * self.num_heads, seq, head_dim))
        };
        let q = heads((l.q_proj.forward(xs)? * (head_dim as f64).powf(-0.5))?)?;
        let k = heads(l.k_proj.forward(xs)?)?;
        let v = heads(l.v_proj.forward(xs)?)?;
        let scores = q.matmul(&k.transpose(1, 2)?.contiguous()?)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
        let out = weights
            .matmul(&v)?
            .reshape((batch, self.num_heads, seq, head_dim))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, seq, width))?;
        l.out_proj.forward(&out)
    }
}

/// `[seq, seq]`: 0 where a token may look, a large negative number above the diagonal.
fn causal_mask(seq: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::MIN } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (seq, seq), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn config(act: &str) -> TextEncoderJson {
        serde_json::from_str(&format!(
            r#"{{"vocab_size":100,"hidden_size":32,"intermediate_size":64,
                "num_hidden_layers":2,"num_attention_heads":4,"max_position_embeddings":77,
                "hidden_act":"{act}"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn own_model_equals_candles_on_quick_gelu() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let c = config("quick_gelu");
        let candle = ClipTextTransformer::new(vb.pp("text_model"), &c.quick_gelu_config()).unwrap();
        // Layer norms start at weight 1, bias 0; give them values so a mix-up would show.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.contains("layer_norm") {
                let t = Tensor::randn(0f32, 0.5, var.shape(), &dev).unwrap();
                var.set(&(t + 1.0).unwrap()).unwrap();
            }
        }
        let own = ClipText::new(vb.pp("text_model"), &c, TextActivation::QuickGelu).unwrap();
        let ids = Tensor::new(&[[49u32, 3, 7, 99, 0, 0], [1, 2, 3, 4, 5, 6]], &dev).unwrap();
        let a = candle.forward_with_mask(&ids, usize::MAX).unwrap();
        let b = own.forward(&ids).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn unknown_activation_and_architecture_name_the_file() {
        let path = Path::new("text_encoder/config.json");
        let err = config("relu").validate(path).unwrap_err().to_string();
        assert!(
            err.contains("relu") && err.contains("text_encoder/config.json"),
            "{err}"
        );
        let mut c = config("gelu");
        c.architectures = Some(vec!["T5EncoderModel".into()]);
        let err = c.validate(path).unwrap_err().to_string();
        assert!(err.contains("T5EncoderModel"), "{err}");
    }
}
