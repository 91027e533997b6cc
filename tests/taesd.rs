//! TAESD previews: the decoder matches diffusers' `AutoencoderTiny` decoder on golden data
//! (tests/data/make_taesd_tiny.py), reads the original file layout too, and a model folder with
//! a `taesd` folder streams full-resolution previews; a broken one is left out.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{Device, Tensor};
use interconcept::engine::pipeline::SamplingParams;
use interconcept::engine::scheduler::SamplerKind;
use interconcept::engine::taesd::TinyDecoder;
use interconcept::worker::{Event, GenerateJob, Job, Worker};

use support::fixtures::{self, Spec};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/taesd_tiny")
}

fn golden() -> (Tensor, Tensor) {
    let mut g = candle_core::safetensors::load(data().join("golden.safetensors"), &Device::Cpu)
        .expect("golden data");
    (
        g.remove("latent").expect("latent"),
        g.remove("image").expect("image"),
    )
}

#[test]
fn the_decoder_matches_diffusers() {
    let decoder = TinyDecoder::load(&data(), &Device::Cpu).unwrap();
    assert_eq!(decoder.downscale, 8);
    let (latent, expected) = golden();
    let image = decoder.decode(&latent).unwrap();
    assert_eq!(image.dims(), &[1, 3, 40, 48]);
    let diff = support::max_abs_diff(&image, &expected);
    let scale = expected
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "differs from diffusers by {diff}"
    );
}

#[test]
fn the_original_layout_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = candle_core::safetensors::load(
        data().join("diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    // The original names count layers from 1 (0 was the clamp) without a prefix.
    let renamed: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let rest = name.strip_prefix("decoder.layers.").unwrap();
            let (index, tail) = rest.split_once('.').unwrap();
            let index: usize = index.parse().unwrap();
            (format!("{}.{tail}", index + 1), t)
        })
        .collect();
    candle_core::safetensors::save(&renamed, dir.path().join("taesd_decoder.safetensors")).unwrap();
    std::fs::copy(data().join("config.json"), dir.path().join("config.json")).unwrap();
    let (latent, _) = golden();
    let a = TinyDecoder::load(&data(), &Device::Cpu).unwrap();
    let b = TinyDecoder::load(dir.path(), &Device::Cpu).unwrap();
    let diff = support::max_abs_diff(&a.decode(&latent).unwrap(), &b.decode(&latent).unwrap());
    assert_eq!(diff, 0.0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("list the folder") {
        let entry = entry.expect("a folder entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
    }
}

/// The previews of one 2-step, 64x64 picture made by a worker over `model`.
fn preview_sizes(model: &Path) -> Vec<(usize, usize)> {
    let mut worker = Worker::spawn(model.to_path_buf(), Device::Cpu, Box::new(|| {}));
    let params = SamplingParams {
        num_steps: 2,
        guidance_scale: 4.0,
        sampler: SamplerKind::Ddim,
        width: 64,
        height: 64,
    };
    let id = worker
        .submit(Job::Generate(GenerateJob::prompt("a cat", 1, params)))
        .expect("the worker takes the job");
    let mut sizes = Vec::new();
    loop {
        let event = worker
            .recv_timeout(Duration::from_secs(120))
            .expect("the picture ends in time");
        match event {
            Event::Preview { id: got, frame } if got == id => {
                assert_eq!(frame.rgb.len(), frame.width * frame.height * 3);
                sizes.push((frame.width, frame.height));
            }
            Event::Finished { id: got, .. } if got == id => return sizes,
            Event::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
}

#[test]
fn a_model_with_taesd_previews_at_full_resolution_and_a_broken_one_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let folder = fixtures::write_diffusers(&dir.path().join("sd15"), &Spec::sd15());
    assert!(preview_sizes(&folder).iter().all(|&s| s == (8, 8)));

    copy_dir(&data(), &folder.join("taesd"));
    let model = support::load(&folder);
    assert!(model.taesd.is_some());
    let sizes = preview_sizes(&folder);
    assert!(sizes.len() >= 3, "noise and two steps: {sizes:?}");
    assert!(sizes.iter().all(|&s| s == (64, 64)), "{sizes:?}");

    std::fs::write(
        folder.join("taesd/diffusion_pytorch_model.safetensors"),
        b"junk",
    )
    .unwrap();
    let model = support::load(&folder);
    assert!(
        model.taesd.is_none(),
        "a broken TAESD is left out, the model still loads"
    );
}
