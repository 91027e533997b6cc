//! Broken and unsupported checkpoints: every failure names the file, and the tensor where there
//! is one, and nothing panics.

mod support;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use interconcept::engine::model::DiffusionModel;
use interconcept::engine::variant::Variant;
use serde_json::{Value, json};

use support::fixtures::{self, Spec};

const UNET_FILE: &str = "unet/diffusion_pytorch_model.safetensors";

fn sd15(dir: &Path) -> PathBuf {
    fixtures::write_diffusers(&dir.join("sd15"), &Spec::sd15())
}

/// The engine's message for a model that must not load.
#[track_caller]
fn load_error(path: &Path) -> String {
    match DiffusionModel::load(path, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

/// Rewrites a safetensors header, keeping the data.
fn edit_header(path: &Path, edit: impl FnOnce(&mut Value)) {
    let bytes = std::fs::read(path).expect("read");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + len]).expect("header");
    edit(&mut header);
    let text = serde_json::to_vec(&header).expect("json");
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    std::fs::write(path, out).expect("write");
}

/// Rewrites a safetensors file's tensors.
fn edit_tensors(path: &Path, edit: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let mut tensors = candle_core::safetensors::load(path, &Device::Cpu).expect("load");
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, path).expect("save");
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).expect("json")).expect("write");
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    edit(&mut value);
    write_json(path, &value);
}

#[test]
fn broken_safetensors_name_the_file_and_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sd15(dir.path());
    let unet = model.join(UNET_FILE);
    let pristine = std::fs::read(&unet).expect("read");

    // Truncated: the last tensors' data is gone.
    std::fs::write(&unet, &pristine[..pristine.len() - 1000]).expect("write");
    let err = load_error(&model);
    assert_mentions(&err, &[UNET_FILE, "truncated", "tensor "]);

    // Corrupt header: not JSON at all.
    let mut garbage = pristine.clone();
    garbage[8..40].fill(b'#');
    std::fs::write(&unet, &garbage).expect("write");
    assert_mentions(
        &load_error(&model),
        &[UNET_FILE, "malformed safetensors header"],
    );

    // Corrupt header: an entry whose byte range does not fit its shape.
    std::fs::write(&unet, &pristine).expect("write");
    edit_header(&unet, |h| {
        h["conv_in.weight"]["shape"] = json!([32, 4, 3, 4])
    });
    assert_mentions(
        &load_error(&model),
        &[UNET_FILE, "conv_in.weight", "corrupt header"],
    );

    // A missing tensor.
    std::fs::write(&unet, &pristine).expect("write");
    let missing = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    edit_tensors(&unet, |t| {
        t.remove(missing);
    });
    assert_mentions(&load_error(&model), &[UNET_FILE, missing, "missing"]);

    // A tensor of the wrong shape.
    std::fs::write(&unet, &pristine).expect("write");
    edit_tensors(&unet, |t| {
        let wrong = Tensor::zeros((32, 8, 3, 3), DType::F32, &Device::Cpu).expect("zeros");
        t.insert("conv_in.weight".into(), wrong);
    });
    assert_mentions(
        &load_error(&model),
        &[
            UNET_FILE,
            "conv_in.weight",
            "[32, 8, 3, 3]",
            "expected [32, 4, 3, 3]",
        ],
    );
}

#[test]
fn broken_single_files_quote_the_names_in_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixtures::write_single_file(&dir.path().join("sd15.safetensors"), &Spec::sd15());
    let ldm = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight";
    edit_tensors(&file, |t| {
        t.remove(ldm);
    });
    let err = load_error(&file);
    assert_mentions(
        &err,
        &[
            "down_blocks.0.resnets.0.conv1.weight",
            ldm,
            "sd15.safetensors",
        ],
    );

    let pristine = std::fs::read(&file).expect("read");
    edit_tensors(&file, |t| {
        let labels = Tensor::zeros((128, 1000), DType::F32, &Device::Cpu).expect("zeros");
        t.insert("model.diffusion_model.label_emb.0.0.weight".into(), labels);
    });
    assert_mentions(&load_error(&file), &["class-conditioned", "label_emb"]);
    std::fs::write(&file, &pristine[..pristine.len() / 2]).expect("write");
    assert_mentions(
        &load_error(&file),
        &["sd15.safetensors", "truncated", "tensor "],
    );

    let not_sd = dir.path().join("lora.safetensors");
    fixtures::save(
        &[(
            "lora_unet_down.alpha".to_string(),
            Tensor::new(1f32, &Device::Cpu).expect("t"),
        )]
        .into_iter()
        .collect(),
        &not_sd,
    );
    assert_mentions(
        &load_error(&not_sd),
        &["lora.safetensors", "not a Stable Diffusion checkpoint"],
    );
}

#[test]
fn unknown_architectures_name_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sd15(dir.path());
    let index = model.join("model_index.json");
    let original = std::fs::read_to_string(&index).expect("read");
    edit_json(&index, |v| v["_class_name"] = json!("FluxPipeline"));
    assert_mentions(&load_error(&model), &["FluxPipeline", "model_index.json"]);
    std::fs::write(&index, original).expect("write");

    let unet = model.join("unet/config.json");
    edit_json(&unet, |v| v["_class_name"] = json!("SD3Transformer2DModel"));
    assert_mentions(
        &load_error(&model),
        &["SD3Transformer2DModel", "unet/config.json"],
    );
    edit_json(&unet, |v| v["_class_name"] = json!("UNet2DConditionModel"));

    edit_json(&unet, |v| v["time_cond_proj_dim"] = json!(256));
    assert_mentions(
        &load_error(&model),
        &["time_cond_proj_dim", "unet/config.json"],
    );
    edit_json(&unet, |v| v["time_cond_proj_dim"] = Value::Null);
    edit_json(&unet, |v| v["in_channels"] = json!(9));
    assert_mentions(&load_error(&model), &["inpainting", "unet/config.json"]);
    edit_json(&unet, |v| v["in_channels"] = json!(4));

    let text = model.join("text_encoder/config.json");
    edit_json(&text, |v| v["architectures"] = json!(["T5EncoderModel"]));
    assert_mentions(
        &load_error(&model),
        &["T5EncoderModel", "text_encoder/config.json"],
    );
}

#[test]
fn sdxl_turbo_is_recognised_and_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sd15(dir.path());
    edit_json(&model.join("model_index.json"), |v| {
        v["_class_name"] = json!("StableDiffusionXLPipeline");
        v["text_encoder_2"] = json!(["transformers", "CLIPTextModelWithProjection"]);
    });
    edit_json(&model.join("unet/config.json"), |v| {
        v["addition_embed_type"] = json!("text_time");
        v["projection_class_embeddings_input_dim"] = json!(2816);
    });
    edit_json(&model.join("scheduler/scheduler_config.json"), |v| {
        v["_class_name"] = json!("EulerAncestralDiscreteScheduler");
        v["timestep_spacing"] = json!("trailing");
    });
    std::fs::create_dir_all(model.join("text_encoder_2")).expect("mkdir");
    let err = load_error(&model);
    assert_mentions(
        &err,
        &[
            "SDXL-Turbo",
            "not supported",
            "add_embedding",
            "text_time",
            "unet/config.json",
        ],
    );
}

#[test]
fn sd_turbo_is_read_from_its_scheduler_and_runs_in_one_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixtures::write_diffusers(&dir.path().join("turbo"), &Spec::sd21());
    edit_json(&model.join("scheduler/scheduler_config.json"), |v| {
        v["_class_name"] = json!("EulerDiscreteScheduler");
        v["prediction_type"] = json!("epsilon");
        v["timestep_spacing"] = json!("trailing");
    });
    let model = support::load(&model);
    assert_eq!(model.variant, Variant::SdTurbo);
    assert_eq!(model.variant.default_steps(), 1);
    assert_eq!(model.variant.default_guidance(), 0.0);
    let params = interconcept::engine::pipeline::SamplingParams {
        num_steps: 1,
        guidance_scale: 0.0,
        sampler: interconcept::engine::scheduler::SamplerKind::Ddim,
        width: 64,
        height: 64,
    };
    let (cond, _) = model.encode_prompts(&["a cat"]).expect("encodes");
    let noise = interconcept::engine::pipeline::initial_noise(&model, 0, &params).expect("noise");
    let pictures =
        interconcept::engine::pipeline::generate(&model, &cond, &noise, &[0], &params, &mut |_| {
            true
        })
        .expect("one step");
    assert!(!pictures[0].non_finite);
}

#[test]
fn pickles_are_refused_unopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("v1-5-pruned-emaonly.ckpt");
    // Not even a valid pickle: it must not be read at all.
    std::fs::write(&ckpt, b"\x80\x04 would run code").expect("write");
    assert_mentions(
        &load_error(&ckpt),
        &[
            "pickled",
            "arbitrary code",
            "v1-5-pruned-emaonly.safetensors",
        ],
    );

    let model = sd15(dir.path());
    let unet = model.join(UNET_FILE);
    std::fs::rename(&unet, model.join("unet/diffusion_pytorch_model.bin")).expect("rename");
    assert_mentions(
        &load_error(&model),
        &["pickled", "diffusion_pytorch_model.bin"],
    );
}
