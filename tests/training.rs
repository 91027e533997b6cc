//! A short training run on a few Fashion-MNIST pictures lowers both stages' losses, and the
//! exported folder loads as a model that draws.

use candle_core::Device;
use interconcept::engine::model::DiffusionModel;
use interconcept::engine::pipeline::{self, SamplingParams};
use interconcept::engine::scheduler::SamplerKind;
use interconcept::engine::tokenizer::ClipTokenizer;
use interconcept::train::cli::{Stage, TrainArgs, train};
use interconcept::train::diffusion::{self, DiffusionTrainConfig};
use interconcept::train::embedded::{self, EmbeddedArchitecture, TrainedParts};
use interconcept::train::fashion_mnist::{DEFAULT_DIR, FashionMnist, Split};

#[test]
fn a_short_training_run_lowers_the_loss_and_exports_a_model() {
    let data_dir = std::path::Path::new(DEFAULT_DIR);
    assert!(
        data_dir.is_dir(),
        "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist"
    );
    let device = Device::Cpu;
    let work = tempfile::tempdir().unwrap();
    let data = FashionMnist::load(data_dir, Split::Train)
        .unwrap()
        .truncated(24);
    let arch = EmbeddedArchitecture::default();
    let tokenizer_dir = interconcept::engine::model::embedded_model_dir().join("tokenizer");
    let cfg = DiffusionTrainConfig {
        work_dir: work.path().join("checkpoints"),
        out_dir: work.path().join("model"),
        tokenizer_dir: tokenizer_dir.clone(),
        vae_steps: 40,
        vae_batch: 8,
        unet_steps: 40,
        unet_batch: 8,
        limit: Some(24),
        checkpoint_every: 20,
        ..Default::default()
    };

    let (vae, report) = diffusion::train_vae(&cfg, &arch, &data, &device).unwrap();
    assert!(
        report.last_loss < report.first_loss,
        "VAE loss did not fall: {report:?}"
    );
    let encoded =
        diffusion::encode_for_unet(&vae, &arch, &data, 0, &device, &cfg.work_dir, false).unwrap();
    let tokenizer = ClipTokenizer::from_dir(&tokenizer_dir).unwrap();
    let (unet, text, report) =
        diffusion::train_unet(&cfg, &arch, &encoded, &tokenizer, &device).unwrap();
    assert!(
        report.last_loss < report.first_loss,
        "UNet loss did not fall: {report:?}"
    );
    assert!(work.path().join("checkpoints/unet.safetensors").is_file());

    embedded::export(
        &arch,
        &TrainedParts {
            unet: &unet,
            vae: &vae,
            text_encoder: &text,
            scaling_factor: encoded.fit.scaling_factor,
            latent_rgb: encoded.fit.latent_rgb.clone(),
        },
        &tokenizer_dir,
        &cfg.out_dir,
    )
    .unwrap();
    let model = DiffusionModel::load(&cfg.out_dir, &device).unwrap();
    let params = SamplingParams {
        num_steps: 4,
        guidance_scale: 3.0,
        sampler: SamplerKind::Ddim,
        width: 32,
        height: 32,
    };
    let (cond, _) = model.encode_prompts(&["a sneaker"]).unwrap();
    let initial = pipeline::initial_noise(&model, 1, &params).unwrap();
    let pictures =
        pipeline::generate(&model, &cond, &initial, &[1], &params, &mut |_| true).unwrap();
    assert_eq!(pictures[0].rgb.len(), 32 * 32 * 3);
    assert!(!pictures[0].non_finite);
}

/// A short run of `stage` on 24 pictures from the shipped model, into `work`'s `checkpoints`
/// and `model` folders.
fn from_shipped(work: &std::path::Path, stage: Stage) -> TrainArgs {
    TrainArgs {
        data: DEFAULT_DIR.into(),
        out: Some(work.join("model")),
        meter_out: None,
        work: work.join("checkpoints"),
        stage,
        vae_steps: 0,
        unet_steps: 0,
        batch: 4,
        limit: Some(24),
        seed: 0,
        resume: false,
        init_from: Some(interconcept::engine::model::embedded_model_dir()),
        init_step: 0,
        oversample: Vec::new(),
    }
}

#[test]
fn training_continues_from_a_finished_model_with_its_latent_scaling() {
    let shipped = interconcept::engine::model::embedded_model_dir();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("model");
    let args = TrainArgs {
        unet_steps: 3502,
        init_step: 3500,
        oversample: vec![(6, 3)],
        ..from_shipped(work.path(), Stage::Unet)
    };
    train(&args).unwrap();

    // Two steps ran on top of the shipped weights, on the shipped latent scaling.
    let step: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("checkpoints/unet.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(step["step"], 3502);
    let scaling = |dir: &std::path::Path| {
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vae/config.json")).unwrap())
                .unwrap();
        config["scaling_factor"].as_f64().unwrap()
    };
    assert_eq!(scaling(&out), scaling(&shipped));
    let before = DiffusionModel::load(&shipped, &Device::Cpu).unwrap();
    let after = DiffusionModel::load(&out, &Device::Cpu).unwrap();
    assert_eq!(after.latent_rgb, before.latent_rgb);
    assert_ne!(
        after.id.weights_hash, before.id.weights_hash,
        "no step was taken"
    );
}

#[test]
fn a_decoder_run_keeps_the_encoder_unet_and_latent_space() {
    use interconcept::engine::model::Component;

    let shipped = interconcept::engine::model::embedded_model_dir();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("model");
    let args = TrainArgs {
        vae_steps: 803,
        init_step: 800,
        ..from_shipped(work.path(), Stage::Decoder)
    };
    train(&args).unwrap();

    let before = DiffusionModel::load(&shipped, &Device::Cpu).unwrap();
    let after = DiffusionModel::load(&out, &Device::Cpu).unwrap();
    let same = |component: Component, name: &str| {
        let a = before.store(component).get(name).unwrap();
        let b = after.store(component).get(name).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().sum_all().unwrap();
        diff.to_scalar::<f32>().unwrap() == 0.0
    };
    let vae = before.store(Component::Vae);
    let (mut decoder, mut kept) = (0, 0);
    for name in vae.names() {
        if name.starts_with("decoder.") || name.starts_with("post_quant_conv.") {
            decoder += usize::from(!same(Component::Vae, name));
        } else {
            assert!(same(Component::Vae, name), "{name} changed");
            kept += 1;
        }
    }
    assert!(
        kept > 0 && decoder > 0,
        "{kept} tensors kept, {decoder} changed"
    );
    for name in before.store(Component::Unet).names() {
        assert!(same(Component::Unet, name), "UNet tensor {name} changed");
    }
    assert_eq!(after.vae_scaling_factor, before.vae_scaling_factor);
    assert_eq!(after.latent_rgb, before.latent_rgb);

    // Nothing to train is refused before any work.
    let nothing = TrainArgs {
        vae_steps: 800,
        work: work.path().join("other"),
        ..args
    };
    let error = train(&nothing).unwrap_err().to_string();
    assert!(error.contains("--vae-steps must be larger"), "{error}");

    // A work folder without a finished run to refine is refused before any work.
    let empty = TrainArgs {
        vae_steps: 900,
        work: work.path().join("empty"),
        init_from: None,
        init_step: 0,
        ..nothing
    };
    let error = train(&empty).unwrap_err().to_string();
    assert!(error.contains("holds no VAE checkpoint"), "{error}");
    assert!(!work.path().join("empty/vae.safetensors").exists());
}

#[test]
fn real_pictures_set_the_ceiling_of_the_meter() {
    use interconcept::engine::meter::ConceptMeter;
    use interconcept::train::cli::{embedded_meter_dir, reference_scores};

    let model = DiffusionModel::load(
        &interconcept::engine::model::embedded_model_dir(),
        &Device::Cpu,
    )
    .unwrap();
    let meter = ConceptMeter::load(&embedded_meter_dir()).unwrap();
    let test = FashionMnist::load(std::path::Path::new(DEFAULT_DIR), Split::Test).unwrap();
    let scores = reference_scores(&model, &meter, &test, 16).unwrap();
    assert_eq!(scores.len(), 10);
    for s in &scores {
        assert_eq!(s.total, 16);
        assert!(s.real <= 16 && s.reconstructed <= 16);
    }
    // Trousers are the meter's easiest class, as pictures and through the VAE.
    let trousers = &scores[1];
    assert!(trousers.prompt.contains("trousers"));
    assert!(
        trousers.real >= 14 && trousers.reconstructed >= 12,
        "{trousers:?}"
    );
}
