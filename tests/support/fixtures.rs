//! Random-weight Stable Diffusion 1.5 and 2.1 checkpoints, in both layouts users keep.
//!
//! The configs are the real ones (`runwayml/stable-diffusion-v1-5`,
//! `stabilityai/stable-diffusion-2-1`) with narrower widths: UNet channels [32, 64, 64, 64]
//! (candle's UNet resnets use 32 groups), VAE [32, 32, 64, 64], a text encoder 64 wide and
//! 2 layers deep over the real 49,408-token vocabulary. Depth per level, block types, key names
//! and folder layout are the real ones. The same weights are written as a diffusers folder and
//! as a single LDM-layout `.safetensors` file, so the two loaders can be compared exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use interconcept::engine::config::{UNetJson, VaeJson};
use interconcept::engine::ldm_keys::{self, KeyMap};
use interconcept::engine::model::embedded_model_dir;
use interconcept::engine::text_encoder::{TextEncoder, TextEncoderJson};
use serde_json::{Value, json};

use super::record::{Recorder, invent};
pub use super::specs::{Family, Spec};

/// A component's tensors by diffusers name.
pub type Tensors = BTreeMap<String, Tensor>;

/// The three components' tensors, as candle's modules ask for them.
pub struct Weights {
    /// `text_encoder/model.safetensors`.
    pub text_encoder: Tensors,
    /// `unet/diffusion_pytorch_model.safetensors`.
    pub unet: Tensors,
    /// `vae/diffusion_pytorch_model.safetensors`.
    pub vae: Tensors,
}

fn take(recorded: super::record::Recorded) -> Tensors {
    std::mem::take(&mut *recorded.lock().expect("recorder lock"))
}

/// Builds each component over a recorder; `shapes_only` skips the values.
pub fn weights(spec: &Spec, shapes_only: bool) -> Weights {
    let fixture = Path::new("fixture");
    let unet: UNetJson = serde_json::from_value(spec.unet_config()).expect("unet config");
    let (vb, unet_rec) = Recorder::var_builder(shapes_only);
    let cfg = unet.to_candle(fixture).expect("candle unet config");
    UNet2DConditionModel::new(vb, 4, 4, false, cfg).expect("unet builds");

    let vae: VaeJson = serde_json::from_value(spec.vae_config()).expect("vae config");
    let (vb, vae_rec) = Recorder::var_builder(shapes_only);
    AutoEncoderKL::new(vb, 3, 3, vae.to_candle()).expect("vae builds");

    let text: TextEncoderJson = serde_json::from_value(spec.text_config()).expect("text config");
    let (vb, text_rec) = Recorder::var_builder(shapes_only);
    if TextEncoder::new(vb, &text, fixture).is_err() {
        panic!("text encoder builds");
    }
    let mut text_encoder = take(text_rec);
    let ids = Tensor::arange(0i64, 77, &Device::Cpu).and_then(|t| t.reshape((1, 77)));
    text_encoder.insert(
        "text_model.embeddings.position_ids".into(),
        ids.expect("position ids"),
    );
    Weights {
        text_encoder,
        unet: take(unet_rec),
        vae: take(vae_rec),
    }
}

fn to_disk(tensors: &Tensors, dtype: DType) -> BTreeMap<String, Tensor> {
    tensors
        .iter()
        .map(|(n, t)| {
            let t = if t.dtype().is_float() {
                t.to_dtype(dtype).expect("cast")
            } else {
                t.clone()
            };
            (n.clone(), t)
        })
        .collect()
}

/// Writes safetensors.
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    let map: std::collections::HashMap<_, _> = tensors.clone().into_iter().collect();
    candle_core::safetensors::save(&map, path).expect("safetensors written");
}

fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    let text = serde_json::to_string_pretty(value).expect("json");
    std::fs::write(path, text + "\n").expect("json written");
}

/// Writes a diffusers folder at `dir` and returns it.
pub fn write_diffusers(dir: &Path, spec: &Spec) -> PathBuf {
    let w = weights(spec, false);
    write_json(&dir.join("model_index.json"), &spec.model_index());
    write_json(&dir.join("unet/config.json"), &spec.unet_config());
    write_json(&dir.join("vae/config.json"), &spec.vae_config());
    write_json(&dir.join("text_encoder/config.json"), &spec.text_config());
    write_json(
        &dir.join("scheduler/scheduler_config.json"),
        &spec.scheduler_config(),
    );
    write_json(
        &dir.join("feature_extractor/preprocessor_config.json"),
        &json!({"crop_size": 224, "do_center_crop": true, "do_normalize": true, "size": 224}),
    );
    let suffix = if spec.dtype == DType::F16 {
        ".fp16"
    } else {
        ""
    };
    save(
        &to_disk(&w.text_encoder, spec.dtype),
        &dir.join(format!("text_encoder/model{suffix}.safetensors")),
    );
    for (name, tensors) in [("unet", &w.unet), ("vae", &w.vae)] {
        save(
            &to_disk(tensors, spec.dtype),
            &dir.join(format!(
                "{name}/diffusion_pytorch_model{suffix}.safetensors"
            )),
        );
    }

    // The real CLIP tokenizer files; SD 2.x pads with "!".
    let tokenizer = dir.join("tokenizer");
    std::fs::create_dir_all(&tokenizer).expect("mkdir");
    for file in [
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(
            embedded_model_dir().join("tokenizer").join(file),
            tokenizer.join(file),
        )
        .expect("tokenizer file copied");
    }
    if spec.family == Family::Sd21 {
        let path = tokenizer.join("special_tokens_map.json");
        let mut map: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        map["pad_token"] = json!("!");
        write_json(&path, &map);
    }
    dir.to_path_buf()
}

/// Writes the same weights as one LDM-layout `.safetensors` file, with the buffers and EMA
/// bookkeeping real files carry.
pub fn write_single_file(path: &Path, spec: &Spec) -> PathBuf {
    let w = weights(spec, false);
    let mut out = BTreeMap::new();
    let mut put = |map: &KeyMap, name: &str, t: Tensor| {
        let ldm = map
            .to_checkpoint(name)
            .unwrap_or_else(|| panic!("no LDM name for {name}"));
        assert!(out.insert(ldm.clone(), t).is_none(), "{ldm} written twice");
    };
    let unet_map = ldm_keys::unet_map(&spec.unet_layout());
    for (name, t) in &w.unet {
        put(&unet_map, name, t.clone());
    }
    let vae_map = ldm_keys::vae_map(spec.vae_channels.len(), spec.layers_per_block);
    for (name, t) in &w.vae {
        // LDM's VAE attention uses 1x1 convolutions.
        let t = match t.dims() {
            &[o, i] if name.contains("mid_block.attentions") => {
                t.reshape((o, i, 1, 1)).expect("4d")
            }
            _ => t.clone(),
        };
        put(&vae_map, name, t);
    }
    match spec.family {
        Family::Sd15 => {
            let map = ldm_keys::clip_map();
            for (name, t) in &w.text_encoder {
                put(&map, name, t.clone());
            }
        }
        Family::Sd21 => open_clip_tensors(spec, &w.text_encoder, &mut out),
    }
    let dev = &Device::Cpu;
    let schedule = Tensor::arange(0f32, 1000., dev).expect("buffer");
    out.insert("betas".into(), schedule.clone());
    out.insert("alphas_cumprod".into(), schedule);
    out.insert(
        "model_ema.decay".into(),
        Tensor::new(0.9999f32, dev).expect("scalar"),
    );
    out.insert(
        "model_ema.num_updates".into(),
        Tensor::new(1000i32, dev).expect("scalar"),
    );
    save(&to_disk(&out, spec.dtype), path);
    path.to_path_buf()
}

/// OpenCLIP's names: fused q/k/v, one more layer than diffusers keeps, the projection.
fn open_clip_tensors(spec: &Spec, text: &Tensors, out: &mut BTreeMap<String, Tensor>) {
    let layers = spec.text_layers;
    let map = ldm_keys::open_clip_map(layers + 1);
    let width = spec.text_width;
    for (name, t) in text {
        if name.ends_with("position_ids")
            || name.contains("self_attn.k_proj")
            || name.contains("self_attn.v_proj")
        {
            continue;
        }
        if name.contains("self_attn.q_proj") {
            let part = |p: &str| text[&name.replace("q_proj", p)].clone();
            let fused = Tensor::cat(&[t.clone(), part("k_proj"), part("v_proj")], 0).expect("cat");
            out.insert(map.to_checkpoint(name).expect("fused name"), fused);
            continue;
        }
        out.insert(
            map.to_checkpoint(name).unwrap_or_else(|| panic!("{name}")),
            t.clone(),
        );
    }
    // The last layer, which Stable Diffusion 2 does not use, and OpenCLIP's extras.
    let p = format!(
        "{}transformer.resblocks.{layers}.",
        ldm_keys::OPEN_CLIP_PREFIX
    );
    let konst = candle_nn::Init::Const(1.0);
    let randn = candle_nn::Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    };
    for (name, shape, init) in [
        ("ln_1.weight", vec![width], konst),
        ("ln_1.bias", vec![width], randn),
        ("attn.in_proj_weight", vec![3 * width, width], randn),
        ("attn.in_proj_bias", vec![3 * width], randn),
        ("attn.out_proj.weight", vec![width, width], randn),
        ("attn.out_proj.bias", vec![width], randn),
        ("ln_2.weight", vec![width], konst),
        ("ln_2.bias", vec![width], randn),
        ("mlp.c_fc.weight", vec![4 * width, width], randn),
        ("mlp.c_fc.bias", vec![4 * width], randn),
        ("mlp.c_proj.weight", vec![width, 4 * width], randn),
        ("mlp.c_proj.bias", vec![width], randn),
    ] {
        let name = format!("{p}{name}");
        let t = invent(&shape.into(), &name, init).expect("invented");
        out.insert(name, t);
    }
    let o = ldm_keys::OPEN_CLIP_PREFIX;
    let projection = invent(&(width, width).into(), "proj", randn).expect("invented");
    out.insert(format!("{o}text_projection"), projection);
    out.insert(
        format!("{o}logit_scale"),
        Tensor::new(4.6052f32, &Device::Cpu).expect("scalar"),
    );
}
