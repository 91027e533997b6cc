//! The denoising loop: conditioning and seeded noise in, pictures out.
//!
//! One call denoises a batch of points at once, each with its own conditioning and seed, so a
//! grid of the navigator costs one UNet pass per step rather than one per tile. Every random
//! draw comes from the per-image seed, so an image in a batch equals the image made alone.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::cpu_unet::{Context, CpuUNet, Weights};
use super::error::{CandleContext, EngineError, Result};
use super::model::{Component, DiffusionModel};
use super::noise;
use super::preview::to_u8;
use super::scheduler::{Sampler, SamplerKind};
use super::vae_tiling::decode_tiled_with;

/// The largest image side the program accepts.
pub const MAX_SIDE: usize = 2048;

/// How to sample: everything that shapes a run except the points and seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Denoising steps.
    pub num_steps: usize,
    /// Classifier-free guidance scale; at 1 or below the unconditional branch is skipped.
    pub guidance_scale: f64,
    /// The sampler.
    pub sampler: SamplerKind,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
}

impl SamplingParams {
    /// Whether the unconditional branch runs.
    pub fn uses_guidance(&self) -> bool {
        self.guidance_scale > 1.0
    }
}

/// A finished picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB8, row-major.
    pub rgb: Vec<u8>,
    /// Whether the model produced NaN or infinity (a blown-up weight): the picture is then a
    /// marker, not the model's output.
    pub non_finite: bool,
}

/// What the loop reports after each step.
pub struct StepProgress<'a> {
    /// Steps done, from 1.
    pub step: usize,
    /// Steps in the run.
    pub num_steps: usize,
    /// The current latents, `[B, C, h, w]`.
    pub latents: &'a Tensor,
}

/// The initial latent of one image: seeded standard normal noise, before sampler scaling.
pub fn initial_noise(model: &DiffusionModel, seed: u64, params: &SamplingParams) -> Result<Tensor> {
    let (h, w) = latent_size(model, params);
    noise::gaussian(seed, (1, model.latent_channels, h, w), &model.device).stage("initial noise")
}

/// The initial latents of a batch, `[B, C, h, w]`: each image's noise from its own seed, so an
/// image in a batch starts exactly as it would alone.
pub fn initial_noise_batch(
    model: &DiffusionModel,
    seeds: &[u64],
    params: &SamplingParams,
) -> Result<Tensor> {
    let parts = seeds
        .iter()
        .map(|&seed| initial_noise(model, seed, params))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0).stage("initial noise")
}

/// Latent height and width for a request.
pub fn latent_size(model: &DiffusionModel, params: &SamplingParams) -> (usize, usize) {
    (
        params.height / model.vae_downscale,
        params.width / model.vae_downscale,
    )
}

/// Checks a request before any tensor work, since candle asserts on bad sizes.
pub fn validate(model: &DiffusionModel, params: &SamplingParams) -> Result<()> {
    let multiple = model.vae_downscale * model.size_multiple;
    for (what, side) in [("width", params.width), ("height", params.height)] {
        if side == 0 || side > MAX_SIDE || side % multiple != 0 {
            return Err(EngineError::InvalidRequest(format!(
                "{what} must be a multiple of {multiple} between {multiple} and {MAX_SIDE}, got {side}"
            )));
        }
    }
    if params.num_steps == 0 || params.num_steps > model.schedule.num_train_timesteps {
        return Err(EngineError::InvalidRequest(format!(
            "steps must be between 1 and {}, got {}",
            model.schedule.num_train_timesteps, params.num_steps
        )));
    }
    if !params.guidance_scale.is_finite() || params.guidance_scale < 0.0 {
        return Err(EngineError::InvalidRequest(format!(
            "guidance must be a finite number >= 0, got {}",
            params.guidance_scale
        )));
    }
    Ok(())
}

/// Denoises a batch and decodes it.
///
/// `conditioning` is `[B, 77, dim]`; `initial` is `[B, C, h, w]` standard normal noise (see
/// [`initial_noise`]); `seeds` seed each image's per-step noise. `on_step` is called after every
/// step and returns `false` to cancel, which ends the call with [`EngineError::Cancelled`].
pub fn generate(
    model: &DiffusionModel,
    conditioning: &Tensor,
    initial: &Tensor,
    seeds: &[u64],
    params: &SamplingParams,
    on_step: &mut dyn FnMut(&StepProgress) -> bool,
) -> Result<Vec<Picture>> {
    let latents = denoise(model, conditioning, initial, seeds, params, on_step)?;
    decode(model, &latents)
}

/// The denoising loop alone; returns the final latents.
pub fn denoise(
    model: &DiffusionModel,
    conditioning: &Tensor,
    initial: &Tensor,
    seeds: &[u64],
    params: &SamplingParams,
    on_step: &mut dyn FnMut(&StepProgress) -> bool,
) -> Result<Tensor> {
    validate(model, params)?;
    let batch = seeds.len();
    let (h, w) = latent_size(model, params);
    let expected = [batch, model.latent_channels, h, w];
    if initial.dims() != expected {
        return Err(EngineError::InvalidRequest(format!(
            "initial latents have shape {:?}, expected {expected:?}",
            initial.dims()
        )));
    }
    let (cb, _, cd) = conditioning.dims3().stage("denoise")?;
    if cb != batch || cd != model.conditioning_dim {
        return Err(EngineError::InvalidRequest(format!(
            "conditioning has shape {:?}, expected [{batch}, 77, {}]",
            conditioning.dims(),
            model.conditioning_dim
        )));
    }

    let _span = tracing::debug_span!("denoise", batch, steps = params.num_steps).entered();
    let sampler = Sampler::new(params.sampler, &model.schedule, params.num_steps)?;

    // With guidance, every image also gets an unconditional prediction (see `predict`).
    let empty = if params.uses_guidance() {
        Some(model.encode_prompts(&[""])?.0)
    } else {
        None
    };

    let unet = GuidedUNet::for_run(model, conditioning, empty.as_ref(), (h, w))?;
    let mut latents = (initial * sampler.init_noise_sigma()).stage("denoise")?;
    for (index, &timestep) in sampler.timesteps().iter().enumerate() {
        let input = sampler.scale_model_input(&latents, index)?;
        let output = unet.predict(&input, timestep, params.guidance_scale)?;

        let step_noise = if sampler.needs_step_noise(index) {
            let per_image = seeds
                .iter()
                .map(|&seed| {
                    let step_seed = noise::derive_seed(seed, 1 + index as u64);
                    noise::gaussian(step_seed, (1, model.latent_channels, h, w), &model.device)
                })
                .collect::<candle_core::Result<Vec<_>>>()
                .stage("step noise")?;
            Some(Tensor::cat(&per_image, 0).stage("step noise")?)
        } else {
            None
        };
        latents = sampler.step(&output, index, &latents, step_noise.as_ref())?;

        let progress = StepProgress {
            step: index + 1,
            num_steps: params.num_steps,
            latents: &latents,
        };
        if !on_step(&progress) {
            return Err(EngineError::Cancelled);
        }
    }
    Ok(latents)
}

/// A run's UNet: the project's own where it takes the model and the latent size (see
/// [`CpuUNet`]), else candle's module; either way one prediction per step with guidance.
pub struct GuidedUNet<'a> {
    model: &'a DiffusionModel,
    /// `[B, 77, dim]`.
    conditioning: &'a Tensor,
    /// The empty prompt's `[1, 77, dim]`, when guidance runs.
    empty: Option<&'a Tensor>,
    own: Option<OwnUNet<'a>>,
}

impl<'a> GuidedUNet<'a> {
    /// Prepares a run over latents of `h x w` cells: the own UNet's weights and contexts.
    pub fn for_run(
        model: &'a DiffusionModel,
        conditioning: &'a Tensor,
        empty: Option<&'a Tensor>,
        (h, w): (usize, usize),
    ) -> Result<Self> {
        Ok(Self {
            model,
            conditioning,
            empty,
            own: OwnUNet::for_run(model, conditioning, empty, (h, w))?,
        })
    }

    /// Whether the project's own UNet computes this run.
    pub fn is_own(&self) -> bool {
        self.own.is_some()
    }

    /// The guided prediction for latents `[B, C, h, w]` at `timestep`.
    pub fn predict(&self, latents: &Tensor, timestep: f64, guidance_scale: f64) -> Result<Tensor> {
        match &self.own {
            Some(own) => own.predict(latents, timestep, guidance_scale),
            None => predict(
                self.model,
                &UNetStep {
                    latents,
                    timestep,
                    conditioning: self.conditioning,
                    empty: self.empty,
                    guidance_scale,
                },
            ),
        }
    }
}

/// The guided UNet output for a batch, from candle's module (the CPU's UNets go mostly
/// through [`OwnUNet`] instead).
///
/// candle's CPU matmul sums in an order that depends on the number of rows, and the UNet's
/// timestep MLPs run on `[batch, channels]`, so the same image would come out with different
/// low bits in batches of different sizes. Every UNet call therefore has the same batch size,
/// which makes an image in a grid equal, byte for byte, to the same image made alone.
///
/// On the CPU each call is one branch of one image (the conditional or the unconditional
/// one), and the calls of a step run side by side on candle's thread pool: the embedded
/// model's tensors are too small for candle to split one operation across cores with profit,
/// while whole calls share out evenly, even the two branches of a lone picture. Elsewhere
/// calls hold exactly `model.unet_batch` images, the last chunk padded with copies.
fn predict(model: &DiffusionModel, step: &UNetStep) -> Result<Tensor> {
    if model.device.is_cpu() {
        predict_parallel(model, step)
    } else {
        predict_chunked(model, step).stage("unet")
    }
}

/// What one denoising step asks of candle's UNet.
struct UNetStep<'a> {
    /// `[B, C, h, w]`, scaled for the sampler.
    latents: &'a Tensor,
    timestep: f64,
    /// `[B, 77, dim]`.
    conditioning: &'a Tensor,
    /// The empty prompt's conditioning `[1, 77, dim]`, when guidance runs.
    empty: Option<&'a Tensor>,
    guidance_scale: f64,
}

/// [`predict`] off the CPU: calls of exactly `model.unet_batch` images.
fn predict_chunked(model: &DiffusionModel, step: &UNetStep) -> candle_core::Result<Tensor> {
    let &UNetStep {
        latents,
        timestep,
        conditioning,
        empty,
        guidance_scale,
    } = step;
    let batch = latents.dim(0)?;
    let chunk = model.unet_batch.max(1);
    let pad = |xs: Tensor, n: usize| -> candle_core::Result<Tensor> {
        if n == chunk {
            return Ok(xs);
        }
        let last = xs.narrow(0, n - 1, 1)?;
        let mut dims = vec![1; xs.rank()];
        dims[0] = chunk - n;
        Tensor::cat(&[xs, last.repeat(dims)?], 0)
    };
    let mut outputs = Vec::with_capacity(batch.div_ceil(chunk));
    for start in (0..batch).step_by(chunk) {
        let n = chunk.min(batch - start);
        let xs = pad(latents.narrow(0, start, n)?, n)?;
        let context = pad(conditioning.narrow(0, start, n)?, n)?;
        let output = match empty {
            Some(empty) => {
                let context = Tensor::cat(&[&empty.repeat((chunk, 1, 1))?, &context], 0)?;
                let both = model
                    .unet
                    .forward(&Tensor::cat(&[&xs, &xs], 0)?, timestep, &context)?;
                let uncond = both.narrow(0, 0, chunk)?;
                let cond = both.narrow(0, chunk, chunk)?;
                guide(&uncond, cond, guidance_scale)?
            }
            None => model.unet.forward(&xs, timestep, &context)?,
        };
        outputs.push(output.narrow(0, 0, n)?);
    }
    Tensor::cat(&outputs, 0)
}

/// A run's UNet calls through [`CpuUNet`]: its weights as they are for this run, and every
/// conditioning with its cross-attention keys and values computed once.
struct OwnUNet<'a> {
    unet: &'a CpuUNet,
    weights: std::sync::Arc<Weights>,
    /// The empty prompt's, when guidance runs.
    empty: Option<Context>,
    /// One per image.
    contexts: Vec<Context>,
}

impl<'a> OwnUNet<'a> {
    /// The CPU UNet for a run when the model has one and the latent is small enough for it.
    fn for_run(
        model: &'a DiffusionModel,
        conditioning: &Tensor,
        empty: Option<&Tensor>,
        (h, w): (usize, usize),
    ) -> Result<Option<Self>> {
        let Some(unet) = model.cpu_unet.as_ref().filter(|u| u.takes(h, w)) else {
            return Ok(None);
        };
        let weights = unet.weights(model.store(Component::Unet))?;
        let empty = empty.map(|e| unet.prepare(&weights, e)).transpose()?;
        let contexts = (0..conditioning.dim(0).stage("unet context")?)
            .map(|image| {
                let one = conditioning.narrow(0, image, 1).stage("unet context")?;
                unet.prepare(&weights, &one)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Self {
            unet,
            weights,
            empty,
            contexts,
        }))
    }

    /// The guided prediction for a batch, one call per image and branch (see [`side_by_side`]).
    fn predict(&self, latents: &Tensor, timestep: f64, guidance_scale: f64) -> Result<Tensor> {
        let guided = self.empty.is_some();
        side_by_side(
            self.contexts.len(),
            guided,
            guidance_scale,
            |image, unconditional| {
                let xs = latents.narrow(0, image, 1).stage("unet")?;
                let context = match &self.empty {
                    Some(empty) if unconditional => empty,
                    _ => &self.contexts[image],
                };
                self.unet.forward(&self.weights, &xs, timestep, context)
            },
        )
    }
}

/// Classifier-free guidance: the unconditional prediction pushed toward the conditional one.
fn guide(uncond: &Tensor, cond: Tensor, guidance_scale: f64) -> candle_core::Result<Tensor> {
    uncond + ((cond - uncond)? * guidance_scale)?
}

/// [`predict`] on the CPU: one call of candle's module per image and branch (see
/// [`side_by_side`]).
fn predict_parallel(model: &DiffusionModel, step: &UNetStep) -> Result<Tensor> {
    let batch = step.latents.dim(0).stage("unet")?;
    let call = |image, unconditional| -> candle_core::Result<Tensor> {
        let xs = step.latents.narrow(0, image, 1)?;
        let context = match step.empty {
            Some(empty) if unconditional => empty.clone(),
            _ => step.conditioning.narrow(0, image, 1)?,
        };
        model.unet.forward(&xs, step.timestep, &context)
    };
    side_by_side(
        batch,
        step.empty.is_some(),
        step.guidance_scale,
        |image, unconditional| call(image, unconditional).stage("unet"),
    )
}

/// Runs `call(image, unconditional)` for every image of a batch and, when `guided`, both of its
/// branches, side by side on candle's rayon pool, and combines each image's branches with
/// classifier-free guidance.
///
/// Inside the pool, candle's own rayon loops (its convolutions and matrix products) run in
/// place instead of handing each operation to another thread and waiting; its element-wise
/// operations on 64K values or more still go to its second pool, one call at a time.
fn side_by_side(
    batch: usize,
    guided: bool,
    guidance_scale: f64,
    call: impl Fn(usize, bool) -> Result<Tensor> + Sync,
) -> Result<Tensor> {
    use rayon::prelude::*;

    let branches = if guided { 2 } else { 1 };
    let outputs = candle_core::utils::with_threadpool(|| {
        (0..batch * branches)
            .into_par_iter()
            .map(|task| call(task / branches, guided && task % branches == 0))
            .collect::<Result<Vec<_>>>()
    })?;
    let per_image = if guided {
        outputs
            .chunks(2)
            .map(|pair| guide(&pair[0], pair[1].clone(), guidance_scale))
            .collect::<candle_core::Result<Vec<_>>>()
            .stage("guidance")?
    } else {
        outputs
    };
    Tensor::cat(&per_image, 0).stage("unet")
}

/// Latents of at most this many cells (16 x 16: the embedded model's, or SD's up to 128 pixels)
/// are decoded several at once on the CPU.
const SMALL_DECODE_CELLS: usize = 16 * 16;

/// Decodes latents `[B, C, h, w]` with the VAE into pictures.
pub fn decode(model: &DiffusionModel, latents: &Tensor) -> Result<Vec<Picture>> {
    let _span = tracing::debug_span!("decode").entered();
    let (batch, _, h, w) = latents.dims4().stage("decode")?;
    let (height, width) = (h * model.vae_downscale, w * model.vae_downscale);
    let scaled = (latents / model.vae_scaling_factor).stage("decode")?;
    // One picture at a time: candle-core 0.11's CPU matmul is wrong for a transposed left
    // operand broadcast over a batch, which the VAE's mid-block attention produces for batches
    // larger than one (candle issue 3744).
    // Large pictures decode in overlapping tiles to bound memory (see `vae_tiling`).
    let tiled = model.vae_tiling.needs_tiles(h, w);
    // The project's own decoder on the CPU (see `cpu_unet::CpuDecoder`), else candle's.
    let own = match &model.cpu_decoder {
        Some(decoder) => Some((decoder, decoder.weights(model.store(Component::Vae))?)),
        None => None,
    };
    let decode_tile = |latent: &Tensor| -> candle_core::Result<Tensor> {
        match &own {
            Some((decoder, weights)) => decoder
                .decode(weights, latent)
                .map_err(candle_core::Error::wrap),
            None => model.vae.decode(latent),
        }
    };
    let decode_one = |b: usize| {
        let latent = scaled.narrow(0, b, 1)?;
        if tiled {
            decode_tiled_with(decode_tile, &latent, model.vae_downscale, model.vae_tiling)
        } else {
            decode_tile(&latent)?.to_device(&Device::Cpu)
        }
    };
    // Small pictures on the CPU decode side by side, as UNet calls run (see `predict`); large
    // ones one after the other, so that memory holds one decode's activations at a time.
    let side_by_side = model.device.is_cpu() && !tiled && h * w <= SMALL_DECODE_CELLS;
    let parts = if side_by_side {
        use rayon::prelude::*;
        candle_core::utils::with_threadpool(|| {
            (0..batch)
                .into_par_iter()
                .map(decode_one)
                .collect::<candle_core::Result<Vec<_>>>()
        })
    } else {
        (0..batch).map(decode_one).collect()
    };
    let images = parts
        .and_then(|parts| Tensor::cat(&parts, 0))
        .stage("vae decode")?;
    let values = images
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .stage("decode")?;
    let plane = height * width;
    let pictures = (0..batch)
        .map(|b| {
            let image = &values[b * 3 * plane..(b + 1) * 3 * plane];
            let non_finite = image.iter().any(|v| !v.is_finite());
            let rgb = if non_finite {
                broken_marker(width, height)
            } else {
                (0..plane)
                    .flat_map(|p| (0..3).map(move |c| to_u8(image[c * plane + p])))
                    .collect()
            };
            Picture {
                width,
                height,
                rgb,
                non_finite,
            }
        })
        .collect();
    Ok(pictures)
}

/// The picture shown for a broken mind: magenta and black diagonal stripes, unmistakably not a
/// model output.
pub fn broken_marker(width: usize, height: usize) -> Vec<u8> {
    let stripe = (width.max(height) / 8).max(1);
    (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| {
                if ((x + y) / stripe).is_multiple_of(2) {
                    [255, 0, 255]
                } else {
                    [0, 0, 0]
                }
            })
        })
        .collect()
}
