//! Helpers shared by the integration tests: random-weight Stable Diffusion checkpoints with
//! the real key names and folder layouts of SD 1.5 and SD 2.1, at narrow widths.

#![allow(dead_code)]

pub mod fixtures;
pub mod record;
pub mod specs;

use std::path::Path;

use candle_core::{Device, Tensor};
use interconcept::engine::model::DiffusionModel;
use interconcept::engine::pipeline::{self, Picture, SamplingParams};
use interconcept::engine::scheduler::SamplerKind;

/// One picture from a prompt and seed, at `side` x `side`.
pub fn picture(model: &DiffusionModel, prompt: &str, seed: u64, side: usize) -> Picture {
    let params = SamplingParams {
        num_steps: 2,
        guidance_scale: 3.0,
        sampler: SamplerKind::Ddim,
        width: side,
        height: side,
    };
    let (conditioning, _) = model.encode_prompts(&[prompt]).expect("prompt encodes");
    let initial = pipeline::initial_noise(model, seed, &params).expect("noise");
    pipeline::generate(
        model,
        &conditioning,
        &initial,
        &[seed],
        &params,
        &mut |_| true,
    )
    .expect("generates")
    .remove(0)
}

/// Loads a model on the CPU, panicking with the engine's message.
pub fn load(path: &Path) -> DiffusionModel {
    DiffusionModel::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("same shapes")
}
