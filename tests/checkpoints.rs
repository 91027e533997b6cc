//! Real Stable Diffusion layouts: random-weight SD 1.5 and SD 2.1 checkpoints with the real key
//! names, as diffusers folders and as single LDM-layout files, load, make 64 x 64 pictures, and
//! the two layouts of the same weights make the same picture.

mod support;

use candle_core::DType;
use interconcept::engine::model::Component;
use interconcept::engine::scheduler::PredictionType;
use interconcept::engine::text_encoder::TextEncoder;
use interconcept::engine::variant::Variant;

use support::fixtures::{self, Family, Spec};
use support::{load, picture};

/// Every tensor of the diffusers model equals the single-file model's tensor of that name.
fn assert_same_weights(
    a: &interconcept::engine::model::DiffusionModel,
    b: &interconcept::engine::model::DiffusionModel,
) {
    for component in Component::ALL {
        let (sa, sb) = (a.store(component), b.store(component));
        for name in sa.names().filter(|n| !n.ends_with("position_ids")) {
            let ta = sa.get(name).expect("listed");
            let tb = sb
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing from the single file"));
            assert_eq!(ta.dims(), tb.dims(), "{name}");
            let diff = support::max_abs_diff(&ta, &tb);
            assert_eq!(diff, 0.0, "{name} differs by {diff}");
        }
    }
}

#[test]
fn sd15_in_both_layouts_loads_and_makes_the_same_picture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::sd15();
    let folder = fixtures::write_diffusers(&dir.path().join("sd15"), &spec);
    let file = fixtures::write_single_file(&dir.path().join("sd15.safetensors"), &spec);

    let a = load(&folder);
    assert_eq!(a.variant, Variant::Sd15);
    assert_eq!(a.id.variant, Some(Variant::Sd15));
    assert!(matches!(a.text_encoder, TextEncoder::QuickGelu(_)));
    let b = load(&file);
    assert_eq!(b.variant, Variant::Sd15);
    assert_eq!(b.id.name, "sd15");
    assert_same_weights(&a, &b);

    let pa = picture(&a, "a red sneaker", 7, 64);
    let pb = picture(&b, "a red sneaker", 7, 64);
    assert_eq!((pa.width, pa.height), (64, 64));
    assert!(!pa.non_finite);
    assert!(pa.rgb.iter().any(|&v| v != pa.rgb[0]), "a flat picture");
    assert_eq!(pa.rgb, pb.rgb, "the two layouts make different pictures");
}

#[test]
fn sd21_in_both_layouts_loads_and_makes_the_same_picture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::sd21();
    let folder = fixtures::write_diffusers(&dir.path().join("sd21"), &spec);
    let file = fixtures::write_single_file(&dir.path().join("sd21.safetensors"), &spec);

    let a = load(&folder);
    assert_eq!(a.variant, Variant::Sd21);
    assert_eq!(a.schedule.prediction_type, PredictionType::VPrediction);
    assert!(matches!(a.text_encoder, TextEncoder::Clip(_)));
    assert_eq!(a.tokenizer.pad_id(), 0, "SD 2.x pads with !");
    let b = load(&file);
    assert_eq!(b.variant, Variant::Sd21);
    assert_eq!(b.schedule.prediction_type, PredictionType::VPrediction);
    assert_eq!(b.tokenizer.pad_id(), 0);
    assert_same_weights(&a, &b);

    let pa = picture(&a, "a lighthouse at dusk", 3, 64);
    let pb = picture(&b, "a lighthouse at dusk", 3, 64);
    assert!(!pa.non_finite);
    assert!(pa.rgb.iter().any(|&v| v != pa.rgb[0]), "a flat picture");
    assert_eq!(pa.rgb, pb.rgb, "the two layouts make different pictures");
}

#[test]
fn a_sidecar_yaml_sets_the_prediction_of_a_2x_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixtures::write_single_file(&dir.path().join("base.safetensors"), &Spec::sd21());
    std::fs::write(
        dir.path().join("base.yaml"),
        "model:\n  params:\n    parameterization: \"eps\"\n",
    )
    .expect("yaml");
    assert_eq!(
        load(&file).schedule.prediction_type,
        PredictionType::Epsilon
    );
    std::fs::write(
        dir.path().join("base.yaml"),
        "    parameterization: \"v\"\n",
    )
    .expect("yaml");
    assert_eq!(
        load(&file).schedule.prediction_type,
        PredictionType::VPrediction
    );
}

#[test]
fn f16_weights_load_as_f32() {
    let dir = tempfile::tempdir().expect("tempdir");
    let half = Spec {
        dtype: DType::F16,
        ..Spec::sd15()
    };
    let folder = fixtures::write_diffusers(&dir.path().join("half"), &half);
    assert!(
        folder
            .join("unet/diffusion_pytorch_model.fp16.safetensors")
            .is_file()
    );
    let full = load(&fixtures::write_diffusers(
        &dir.path().join("full"),
        &Spec::sd15(),
    ));
    let model = load(&folder);
    for component in Component::ALL {
        let (store, reference) = (model.store(component), full.store(component));
        for name in store.names().filter(|n| !n.ends_with("position_ids")) {
            let t = store.get(name).expect("listed");
            assert_eq!(t.dtype(), DType::F32, "{name}");
            let rounded = reference
                .get(name)
                .and_then(|r| r.to_dtype(DType::F16).ok())
                .and_then(|r| r.to_dtype(DType::F32).ok())
                .expect("reference");
            assert_eq!(support::max_abs_diff(&t, &rounded), 0.0, "{name}");
        }
    }
    assert!(!picture(&model, "", 1, 64).non_finite);
}

#[test]
fn full_size_configs_ask_for_the_real_number_of_tensors() {
    // SD 1.5 and 2.1 checkpoints hold 686 UNet tensors, 248 VAE tensors and 16 per text layer
    // plus 4 (and position_ids); every one has an LDM name under its component's prefix.
    for (family, text_tensors) in [(Family::Sd15, 12 * 16 + 4), (Family::Sd21, 23 * 16 + 4)] {
        let spec = Spec::full_size(family);
        let w = fixtures::weights(&spec, true);
        assert_eq!(w.unet.len(), 686, "{family:?} UNet");
        assert_eq!(w.vae.len(), 248, "{family:?} VAE");
        assert_eq!(
            w.text_encoder.len(),
            text_tensors + 1,
            "{family:?} text encoder"
        );
        let unet_map = interconcept::engine::ldm_keys::unet_map(&spec.unet_layout());
        let mut names = std::collections::BTreeSet::new();
        for name in w.unet.keys() {
            let ldm = unet_map.to_checkpoint(name).expect("an LDM name");
            assert!(ldm.starts_with("model.diffusion_model."), "{ldm}");
            assert_eq!(unet_map.to_diffusers(&ldm).as_deref(), Some(name.as_str()));
            assert!(names.insert(ldm));
        }
        let proj_in = &w.unet["down_blocks.0.attentions.0.proj_in.weight"];
        let expected: &[usize] = match family {
            Family::Sd15 => &[320, 320, 1, 1],
            Family::Sd21 => &[320, 320],
        };
        assert_eq!(proj_in.dims(), expected);
    }
}

#[test]
fn a_text_encoder_saved_without_the_text_model_prefix_loads_the_same() {
    // transformers 5 saves CLIPTextModel's tensors as `embeddings.*`, `encoder.*`, ...
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::sd15();
    let folder = fixtures::write_diffusers(&dir.path().join("sd15"), &spec);
    let before = load(&folder);
    let path = folder.join("text_encoder/model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let bare: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let name = name
                .strip_prefix("text_model.")
                .unwrap_or(&name)
                .to_string();
            (name, t)
        })
        .collect();
    assert!(bare.keys().any(|k| k.starts_with("encoder.layers.")));
    candle_core::safetensors::save(&bare, &path).unwrap();
    let after = load(&folder);
    assert_same_weights(&before, &after);
    assert_eq!(
        picture(&before, "a cat", 1, 64).rgb,
        picture(&after, "a cat", 1, 64).rgb
    );
}

/// Writes a full-size Stable Diffusion 1.5 with random weights (4.3 GB, f32) in the diffusers
/// layout, for benchmarks such as `interconcept --model DIR bench --part mix`:
/// `INTERCONCEPT_FULL_SD15=DIR cargo test --release --test checkpoints -- --ignored
/// write_full_size_sd15`.
#[test]
#[ignore = "writes 4.3 GB; run by hand for benchmarks"]
fn write_full_size_sd15() {
    let dir = std::env::var_os("INTERCONCEPT_FULL_SD15")
        .map(std::path::PathBuf::from)
        .expect("set INTERCONCEPT_FULL_SD15 to the folder to write");
    fixtures::write_diffusers(&dir, &Spec::full_size(Family::Sd15));
    let model = load(&dir);
    assert_eq!(model.variant, Variant::Sd15);
}
