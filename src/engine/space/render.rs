//! Batched grids: many points of concept space through the denoising loop, a batch at a time.
//!
//! A 9x9 plane is 81 pictures. They go to the pipeline in batches, which encodes, denoises and
//! decodes each batch together and runs the UNet on a fixed number of images per call (see
//! `pipeline::denoise`), so a picture made in a batch equals, byte for byte, the picture made
//! alone, and a tile of a grid replays from its recipe. Each picture's initial and per-step
//! noise come from its own seed.

use candle_core::Tensor;

use crate::engine::error::{CandleContext, EngineError, Result};
use crate::engine::model::{Component, DiffusionModel};
use crate::engine::pipeline::{self, Picture, SamplingParams};

/// The largest batch [`default_batch_size`] picks.
pub const MAX_BATCH: usize = 64;

/// What a batch may cost, in UNet weights times latent cells per picture. The embedded model
/// (about 10^6 weights, 8x8 latents) fits 64 pictures many times over; Stable Diffusion 1.x
/// (860 million weights, 64x64 latents) gets batches of one, which is what CPU memory affords.
const BATCH_BUDGET: f64 = 8.0e9;

/// One picture to render: where in concept space, from which noise.
#[derive(Debug, Clone)]
pub struct RenderItem {
    /// The conditioning, `[77, dim]`.
    pub conditioning: Tensor,
    /// The initial noise, `[C, h, w]`, standard normal before sampler scaling.
    pub initial: Tensor,
    /// Seed of the per-step noise (samplers that add noise each step use it).
    pub seed: u64,
}

/// A batch size for a model and picture size: as many pictures as a fixed budget of UNet
/// weights times latent cells allows, up to [`MAX_BATCH`] (64 for the embedded model), in whole
/// multiples of the model's images per UNet call.
pub fn default_batch_size(model: &DiffusionModel, params: &SamplingParams) -> usize {
    let weights = model.store(Component::Unet).num_values().max(1) as f64;
    let (h, w) = pipeline::latent_size(model, params);
    let cells = (h * w).max(1) as f64;
    let fits = ((BATCH_BUDGET / (weights * cells)).floor() as usize).clamp(1, MAX_BATCH);

    // Whole UNet calls: off the CPU the pipeline runs the UNet on exactly `unet_batch` images
    // at a time and pads the last call, so any other size wastes work.
    let per_call = model.unet_batch.max(1);
    (fits / per_call).max(1) * per_call
}

/// Renders items in batches of `batch_size`, in order.
///
/// `on_tile(index, picture)` is called as each picture is done (a batch at a time) and returns
/// `false` to cancel, which ends the call with [`EngineError::Cancelled`].
pub fn render_items(
    model: &DiffusionModel,
    items: &[RenderItem],
    params: &SamplingParams,
    batch_size: usize,
    on_tile: &mut dyn FnMut(usize, &Picture) -> bool,
) -> Result<Vec<Picture>> {
    pipeline::validate(model, params)?;
    let mut pictures = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch_size.max(1)) {
        let _span = tracing::debug_span!("render batch", size = chunk.len()).entered();
        let conditioning: Vec<&Tensor> = chunk.iter().map(|i| &i.conditioning).collect();
        let conditioning = Tensor::stack(&conditioning, 0).stage("render batch")?;
        let initial: Vec<&Tensor> = chunk.iter().map(|i| &i.initial).collect();
        let initial = Tensor::stack(&initial, 0).stage("render batch")?;
        let seeds: Vec<u64> = chunk.iter().map(|i| i.seed).collect();
        let batch =
            pipeline::generate(model, &conditioning, &initial, &seeds, params, &mut |_| {
                true
            })?;
        for picture in batch {
            if !on_tile(pictures.len(), &picture) {
                return Err(EngineError::Cancelled);
            }
            pictures.push(picture);
        }
    }
    Ok(pictures)
}

/// Renders points of concept space (`[77, dim]` each), each from the initial noise of its seed.
pub fn render_points(
    model: &DiffusionModel,
    points: &[Tensor],
    seeds: &[u64],
    params: &SamplingParams,
    batch_size: usize,
    on_tile: &mut dyn FnMut(usize, &Picture) -> bool,
) -> Result<Vec<Picture>> {
    if points.len() != seeds.len() {
        return Err(EngineError::InvalidRequest(format!(
            "{} points but {} seeds",
            points.len(),
            seeds.len()
        )));
    }
    pipeline::validate(model, params)?;
    let items = points
        .iter()
        .zip(seeds)
        .map(|(point, &seed)| {
            let initial = pipeline::initial_noise(model, seed, params)?
                .squeeze(0)
                .stage("initial noise")?;
            Ok(RenderItem {
                conditioning: point.clone(),
                initial,
                seed,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    render_items(model, &items, params, batch_size, on_tile)
}
