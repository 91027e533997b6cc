//! The diffusion engine on the embedded model: reproducible pictures, batches that equal single
//! runs, guidance, the shipped schedule, weight edits and their undo, blown-up weights, requests
//! refused before any tensor work, and the model's identity in recipes.

use std::process::Command;

use candle_core::{Device, Tensor};
use interconcept::engine::EngineError;
use interconcept::engine::model::{Component, DiffusionModel, embedded_model_dir};
use interconcept::engine::pipeline::{self, Picture, SamplingParams};
use interconcept::engine::scheduler::{Sampler, SamplerKind};

/// A UNet tensor every Stable Diffusion UNet has: the last convolution, which writes the
/// predicted noise.
const UNET_CONV_OUT: &str = "conv_out.weight";

fn load() -> DiffusionModel {
    DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).expect("the embedded model loads")
}

/// 20 steps at the model's native size.
fn params(model: &DiffusionModel, sampler: SamplerKind, guidance_scale: f64) -> SamplingParams {
    let side = model.default_size;
    SamplingParams {
        num_steps: 20,
        guidance_scale,
        sampler,
        width: side,
        height: side,
    }
}

/// One picture per (prompt, seed), made in a single batch.
fn make(
    model: &DiffusionModel,
    prompts: &[&str],
    seeds: &[u64],
    p: &SamplingParams,
) -> Vec<Picture> {
    let (conditioning, _) = model.encode_prompts(prompts).expect("prompts encode");
    let noise = |seed| pipeline::initial_noise(model, seed, p).expect("seeded noise");
    let noise: Vec<Tensor> = seeds.iter().map(|&seed| noise(seed)).collect();
    let initial = Tensor::cat(&noise, 0).expect("noise stacks");
    pipeline::generate(model, &conditioning, &initial, seeds, p, &mut |_| true).expect("generates")
}

fn make_one(model: &DiffusionModel, prompt: &str, seed: u64, params: &SamplingParams) -> Picture {
    make(model, &[prompt], &[seed], params).remove(0)
}

/// How two pictures differ, in a few words; `None` when they are the same bytes.
fn pixel_difference(a: &Picture, b: &Picture) -> Option<String> {
    if (a.width, a.height) != (b.width, b.height) {
        return Some(format!(
            "sizes {}x{} and {}x{}",
            a.width, a.height, b.width, b.height
        ));
    }
    let diffs: Vec<u8> = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    let differing = diffs.iter().filter(|&&d| d > 0).count();
    let largest = diffs.iter().max().filter(|&&d| d > 0)?;
    Some(format!(
        "{differing} of {} bytes differ, by up to {largest}",
        diffs.len()
    ))
}

/// Fails with a short account of the difference rather than two walls of numbers.
#[track_caller]
fn assert_same_pixels(a: &Picture, b: &Picture, what: &str) {
    if let Some(difference) = pixel_difference(a, b) {
        panic!("{what}: {difference}");
    }
}

#[test]
fn same_recipe_same_bytes_other_seed_other_picture_for_both_samplers() {
    let model = load();
    for sampler in SamplerKind::ALL {
        let params = params(&model, sampler, 4.0);
        let first = make_one(&model, "a red sneaker", 7, &params);
        let again = make_one(&model, "a red sneaker", 7, &params);
        let other_seed = make_one(&model, "a red sneaker", 8, &params);

        assert_eq!(first.rgb.len(), model.default_size * model.default_size * 3);
        assert!(!first.non_finite, "{sampler:?}");
        assert_same_pixels(&first, &again, &format!("{sampler:?}: same recipe twice"));
        let what = format!("{sampler:?}: seed 8 drew the picture of seed 7");
        assert!(pixel_difference(&first, &other_seed).is_some(), "{what}");
    }
}

#[test]
fn two_cli_runs_write_identical_png_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(name);
        let output = Command::new(env!("CARGO_BIN_EXE_interconcept"))
            .env("RUST_LOG", "error")
            .args("generate --seed 7 --steps 20 --scheduler euler_ancestral".split(' '))
            .args(["--prompt", "a red sneaker", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "generate failed: {stderr}");
        std::fs::read(out).unwrap()
    };
    let first = run("first.png");
    let second = run("second.png");
    assert!(first.starts_with(b"\x89PNG"));
    assert!(
        first == second,
        "two runs of one command wrote different files"
    );
}

#[test]
fn a_picture_in_a_batch_equals_the_picture_made_alone() {
    // Each image's conditioning, initial noise and Euler step noise are its own, so its pixels
    // must not depend on its neighbours in the batch (the navigator's grids rely on it).
    let model = load();
    let prompts = ["a red sneaker", "a bag", ""];
    let seeds = [3, 5, 11];
    let mut mismatches = Vec::new();
    for sampler in SamplerKind::ALL {
        let params = params(&model, sampler, 4.0);
        let batch = make(&model, &prompts, &seeds, &params);
        assert_eq!(batch.len(), 3);
        for (i, (prompt, seed)) in prompts.iter().zip(seeds).enumerate() {
            let alone = make_one(&model, prompt, seed, &params);
            if let Some(difference) = pixel_difference(&batch[i], &alone) {
                mismatches.push(format!(
                    "{sampler:?} image {i} ({prompt:?}, seed {seed}): {difference}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "batch vs alone:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn guidance_changes_the_picture_but_not_an_empty_prompt() {
    let model = load();
    let at = |prompt: &str, guidance: f64| {
        make_one(
            &model,
            prompt,
            21,
            &params(&model, SamplerKind::Ddim, guidance),
        )
    };

    // Guidance 1 runs the conditional branch alone; 4 mixes in the unconditional one.
    let (guided, unguided) = (at("a red sneaker", 4.0), at("a red sneaker", 1.0));
    assert!(
        pixel_difference(&guided, &unguided).is_some(),
        "guidance changed nothing"
    );

    // The unconditional branch is the empty prompt, so with an empty prompt both branches
    // agree and `uncond + g * (cond - uncond)` is `uncond` for any g: the picture equals the
    // one made without guidance, byte for byte.
    let unconditional = at("", 1.0);
    for guidance in [4.0, 9.0] {
        let what = format!("an empty prompt at guidance {guidance} vs guidance off");
        assert_same_pixels(&at("", guidance), &unconditional, &what);
    }
    assert!(pixel_difference(&guided, &unconditional).is_some());
}

#[test]
fn shipped_scheduler_config_gives_leading_ddim_timesteps() {
    let model = load();
    assert_eq!(model.schedule.num_train_timesteps, 1000);
    assert_eq!(model.schedule.steps_offset, 1);

    // diffusers' DDIMScheduler, "leading" spacing, steps_offset 1, 20 steps: 951, 901, ..., 1.
    let ddim = Sampler::new(SamplerKind::Ddim, &model.schedule, 20).unwrap();
    let expected: Vec<f64> = (0..20).rev().map(|i| f64::from(i * 50 + 1)).collect();
    assert_eq!(ddim.timesteps(), &expected[..]);

    // Euler ancestral defaults to "linspace": from 999 down to 0.
    let euler = Sampler::new(SamplerKind::EulerAncestral, &model.schedule, 20).unwrap();
    let ts = euler.timesteps();
    assert_eq!((ts.len(), ts[0], ts[19]), (20, 999.0, 0.0));
}

/// A tensor of `UNET_CONV_OUT`'s shape filled with `value`.
fn conv_out_filled(model: &DiffusionModel, value: f32) -> Tensor {
    let current = model
        .store(Component::Unet)
        .get(UNET_CONV_OUT)
        .expect("UNet has conv_out");
    Tensor::full(value, current.shape(), &Device::Cpu).expect("a small tensor")
}

#[test]
fn a_weight_edit_changes_the_picture_and_restore_gives_it_back() {
    let mut model = load();
    let params = params(&model, SamplerKind::Ddim, 4.0);
    let before = make_one(&model, "a red sneaker", 7, &params);

    let zeros = conv_out_filled(&model, 0.0);
    let unet = model.store_mut(Component::Unet);
    unet.set(UNET_CONV_OUT, &zeros).unwrap();
    let edited: Vec<&str> = model.store(Component::Unet).edited().collect();
    assert_eq!(edited, [UNET_CONV_OUT]);
    let knocked_out = make_one(&model, "a red sneaker", 7, &params);
    let what = format!("zeroing {UNET_CONV_OUT} changed nothing");
    assert!(pixel_difference(&knocked_out, &before).is_some(), "{what}");

    let unet = model.store_mut(Component::Unet);
    assert!(
        unet.restore(UNET_CONV_OUT).unwrap(),
        "the edit was not recorded"
    );
    assert_eq!(model.store(Component::Unet).edited().count(), 0);
    let restored = make_one(&model, "a red sneaker", 7, &params);
    assert_same_pixels(&restored, &before, "after restore");
}

#[test]
fn a_nan_weight_gives_a_marker_picture_not_a_panic() {
    let mut model = load();
    let nan = conv_out_filled(&model, f32::NAN);
    let unet = model.store_mut(Component::Unet);
    unet.set(UNET_CONV_OUT, &nan).unwrap();

    for sampler in SamplerKind::ALL {
        let picture = make_one(&model, "a red sneaker", 7, &params(&model, sampler, 4.0));
        assert!(
            picture.non_finite,
            "{sampler:?}: NaN weights gave a finite picture"
        );
        let marker = pipeline::broken_marker(picture.width, picture.height);
        assert!(
            picture.rgb == marker,
            "{sampler:?}: a broken model must show the marker"
        );
    }

    model.store_mut(Component::Unet).restore_all().unwrap();
    let params = params(&model, SamplerKind::Ddim, 4.0);
    assert!(!make_one(&model, "a red sneaker", 7, &params).non_finite);
}

#[test]
fn bad_requests_are_refused_before_any_tensor_work() {
    let model = load();
    let good = params(&model, SamplerKind::Ddim, 4.0);
    let (conditioning, _) = model.encode_prompts(&["a red sneaker"]).unwrap();
    // Noise of the native size: the absurd sizes below would need gigabytes of it.
    let initial = pipeline::initial_noise(&model, 1, &good).unwrap();

    type Edit = fn(&mut SamplingParams);
    let cases: [(&str, Edit); 9] = [
        ("steps", |p| p.num_steps = 0),
        ("steps", |p| p.num_steps = 1001),
        ("width", |p| p.width += 4),
        ("height", |p| p.height = 0),
        ("width", |p| p.width = 100_000),
        ("height", |p| p.height = 100_000),
        ("guidance", |p| p.guidance_scale = -1.0),
        ("guidance", |p| p.guidance_scale = f64::NAN),
        ("guidance", |p| p.guidance_scale = f64::INFINITY),
    ];
    for (field, edit) in cases {
        let mut params = good.clone();
        edit(&mut params);
        let mut steps_run = 0;
        let mut on_step = |_: &pipeline::StepProgress| {
            steps_run += 1;
            true
        };
        let result =
            pipeline::generate(&model, &conditioning, &initial, &[1], &params, &mut on_step);
        match result {
            Err(EngineError::InvalidRequest(message)) => {
                assert!(
                    message.contains(field),
                    "{params:?}: {message:?} does not name {field}"
                );
            }
            Err(other) => panic!("{params:?}: expected InvalidRequest, got {other:?}"),
            Ok(_) => panic!("{params:?} was accepted"),
        }
        assert_eq!(steps_run, 0, "{params:?}: denoising started");
        let validated = pipeline::validate(&model, &params);
        assert!(
            matches!(validated, Err(EngineError::InvalidRequest(_))),
            "{params:?}"
        );
    }
    pipeline::validate(&model, &good).unwrap();
}

#[test]
fn the_weights_hash_is_stable_and_follows_the_weights() {
    let first = load();
    let second = load();
    assert_eq!(first.id, second.id);
    assert_eq!(first.id.weights_hash.len(), 32);
    assert!(first.id.weights_hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(first.id.name, "fashion-mnist (embedded)");

    // One flipped bit in the last stored value: still a valid file, another model.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&embedded_model_dir(), copy.path()).unwrap();
    let vae = copy.path().join("vae/diffusion_pytorch_model.safetensors");
    let mut bytes = std::fs::read(&vae).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&vae, bytes).unwrap();
    let edited = DiffusionModel::load(copy.path(), &Device::Cpu).unwrap();
    assert_ne!(edited.id.weights_hash, first.id.weights_hash);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
