//! Where models come from, through the command line: the Hugging Face cache (`--model ORG/NAME`
//! with `HF_HOME` pointing at a fake cache in the real layout), single-file checkpoints,
//! `--device`, and `--noise` initial latents that go into the recipe and replay.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use interconcept::engine::hub::{HubOptions, resolve};
use interconcept::engine::npy::write_npy;
use interconcept::recipe::{Recipe, read_png_json};

use support::fixtures::{self, Spec};

const REPO: &str = "test-org/tiny-sd";

/// Runs the program with a clean Hugging Face environment and logging muted to errors.
fn interconcept(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_interconcept"));
    command
        .env("RUST_LOG", "error")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN");
    for (key, value) in env {
        command.env(key, value);
    }
    command.args(args).output().expect("the program starts")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp paths")
}

#[track_caller]
fn one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    lines[0].to_string()
}

#[track_caller]
fn success(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
}

/// A cache in `huggingface_hub`'s layout: weights as blobs, the snapshot's files symlinks to
/// them, `refs/main` naming the snapshot.
fn fake_cache(hf_home: &Path) -> PathBuf {
    let repo = hf_home.join("hub").join("models--test-org--tiny-sd");
    let revision = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = fixtures::write_diffusers(&repo.join("snapshots").join(revision), &Spec::sd15());
    let blobs = repo.join("blobs");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    for (i, file) in [
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    ]
    .iter()
    .enumerate()
    {
        let blob = blobs.join(format!("{i:064x}"));
        std::fs::rename(snapshot.join(file), &blob).expect("to blob");
        let target = Path::new("../../../blobs").join(format!("{i:064x}"));
        std::os::unix::fs::symlink(target, snapshot.join(file)).expect("symlink");
    }
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), revision).expect("ref");
    snapshot
}

#[test]
fn a_hub_id_loads_from_the_cache() {
    let home = tempfile::tempdir().expect("tempdir");
    let snapshot = fake_cache(home.path());
    let options = HubOptions {
        allow_download: false,
        progress: false,
        cache_dir: Some(home.path().join("hub")),
    };
    assert_eq!(resolve(REPO, &options).expect("cached"), snapshot);

    let out = home.path().join("x.png");
    let output = interconcept(
        &[
            "--model",
            REPO,
            "generate",
            "--prompt",
            "a boot",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--out",
            s(&out),
        ],
        &[("HF_HOME", home.path()), ("HF_HUB_OFFLINE", Path::new("1"))],
    );
    success(&output);
    let recipe = Recipe::from_json(&read_png_json(&out).expect("recipe")).expect("parses");
    assert_eq!(recipe.model.name, REPO);
    assert_eq!(
        recipe.model.variant,
        Some(interconcept::engine::variant::Variant::Sd15)
    );
}

#[test]
fn an_uncached_hub_id_offline_is_one_clear_error() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = home.path().join("x.png");
    // An endpoint that refuses connections stands in for a machine without network.
    let output = interconcept(
        &["--model", REPO, "generate", "--out", s(&out)],
        &[
            ("HF_HOME", home.path()),
            ("HF_ENDPOINT", Path::new("http://127.0.0.1:9")),
        ],
    );
    let line = one_error_line(&output);
    for part in [
        REPO,
        "models--test-org--tiny-sd",
        s(home.path()),
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "download failed",
    ] {
        assert!(line.contains(part), "{line:?} lacks {part:?}");
    }

    // A snapshot that lacks a file is not used, and the message says which file.
    fake_cache(home.path());
    let vae = home.path().join(
        "hub/models--test-org--tiny-sd/snapshots/0123456789abcdef0123456789abcdef01234567/vae",
    );
    std::fs::remove_file(vae.join("diffusion_pytorch_model.safetensors")).expect("rm");
    let output = interconcept(
        &["--model", REPO, "generate", "--out", s(&out)],
        &[("HF_HOME", home.path()), ("HF_HUB_OFFLINE", Path::new("1"))],
    );
    let line = one_error_line(&output);
    assert!(
        line.contains("lacks vae/diffusion_pytorch_model.safetensors"),
        "{line}"
    );
    assert!(line.contains("HF_HUB_OFFLINE"), "{line}");
}

#[test]
fn single_files_devices_and_pickles_on_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixtures::write_single_file(&dir.path().join("tiny.safetensors"), &Spec::sd21());
    let out = dir.path().join("x.png");
    let args = [
        "--model",
        s(&file),
        "generate",
        "--width",
        "64",
        "--height",
        "64",
        "--out",
        s(&out),
    ];
    success(&interconcept(&args, &[]));
    let recipe = Recipe::from_json(&read_png_json(&out).expect("recipe")).expect("parses");
    assert_eq!(recipe.model.name, "tiny");
    assert_eq!(recipe.sampling.num_steps, 20);

    if !candle_core::utils::cuda_is_available() {
        let mut with_cuda = vec!["--device", "cuda:0"];
        with_cuda.extend(args);
        let line = one_error_line(&interconcept(&with_cuda, &[]));
        assert!(
            line.contains("cuda:0") && line.contains("--features cuda"),
            "{line}"
        );
    }

    let ckpt = dir.path().join("model.ckpt");
    std::fs::write(&ckpt, b"not opened").expect("write");
    let line = one_error_line(&interconcept(
        &["--model", s(&ckpt), "generate", "--out", s(&out)],
        &[],
    ));
    assert!(
        line.contains("arbitrary code") && line.contains("model.safetensors"),
        "{line}"
    );
}

#[test]
fn noise_files_start_the_picture_and_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixtures::write_diffusers(&dir.path().join("sd15"), &Spec::sd15());
    let m = s(&model);

    // The seeded latent, saved as .npy, makes the same picture as the seed.
    let loaded = support::load(&model);
    let params = interconcept::engine::pipeline::SamplingParams {
        num_steps: 3,
        guidance_scale: 4.0,
        sampler: interconcept::engine::scheduler::SamplerKind::EulerAncestral,
        width: 128,
        height: 64,
    };
    let seeded = interconcept::engine::pipeline::initial_noise(&loaded, 5, &params).expect("noise");
    let values = seeded
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("values");
    let npy = dir.path().join("latent.npy");
    write_npy(&npy, &[1, 4, 8, 16], &values).expect("npy");

    let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
    let common = [
        "--steps",
        "3",
        "--scheduler",
        "euler_ancestral",
        "--seed",
        "5",
        "--prompt",
        "a hat",
    ];
    let mut by_seed = vec![
        "--model",
        m,
        "generate",
        "--width",
        "128",
        "--height",
        "64",
        "--out",
        s(&a),
    ];
    by_seed.extend(common);
    success(&interconcept(&by_seed, &[]));
    let mut by_file = vec!["--model", m, "generate", "--noise", s(&npy), "--out", s(&b)];
    by_file.extend(common);
    success(&interconcept(&by_file, &[]));
    let pixels = |p: &Path| image::open(p).expect("png").to_rgb8().into_raw();
    assert_eq!(
        pixels(&a),
        pixels(&b),
        "the same latent made another picture"
    );

    let recipe = Recipe::from_json(&read_png_json(&b).expect("recipe")).expect("parses");
    let hash = recipe
        .noise_hash
        .clone()
        .expect("the recipe records the noise");
    assert_eq!(hash.len(), 32);
    assert_eq!((recipe.sampling.width, recipe.sampling.height), (128, 64));
    assert_eq!(
        Recipe::from_json(&read_png_json(&a).expect("r"))
            .expect("p")
            .noise_hash,
        None
    );

    // Replay needs the file, and checks it is the same.
    let c = dir.path().join("c.png");
    success(&interconcept(
        &[
            "--model",
            m,
            "replay",
            s(&b),
            "--noise",
            s(&npy),
            "--out",
            s(&c),
        ],
        &[],
    ));
    assert_eq!(pixels(&b), pixels(&c));
    let line = one_error_line(&interconcept(
        &["--model", m, "replay", s(&b), "--out", s(&c)],
        &[],
    ));
    assert!(line.contains("--noise") && line.contains(&hash), "{line}");
    let other = dir.path().join("other.npy");
    write_npy(&other, &[1, 4, 8, 16], &vec![0.5; 512]).expect("npy");
    let line = one_error_line(&interconcept(
        &[
            "--model",
            m,
            "replay",
            s(&b),
            "--noise",
            s(&other),
            "--out",
            s(&c),
        ],
        &[],
    ));
    assert!(line.contains(&hash), "{line}");

    // Shapes that do not fit the model, and sizes that contradict the file.
    write_npy(&other, &[1, 3, 8, 8], &vec![0.0; 192]).expect("npy");
    let line = one_error_line(&interconcept(
        &[
            "--model",
            m,
            "generate",
            "--noise",
            s(&other),
            "--out",
            s(&c),
        ],
        &[],
    ));
    assert!(line.contains("3 channels"), "{line}");
    let line = one_error_line(&interconcept(
        &[
            "--model",
            m,
            "generate",
            "--noise",
            s(&npy),
            "--width",
            "64",
            "--out",
            s(&c),
        ],
        &[],
    ));
    assert!(line.contains("--width 64"), "{line}");
}
