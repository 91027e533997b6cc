//! Training the embedded latent diffusion model, in two stages.
//!
//! 1. The autoencoder learns to squeeze tinted 32x32 Fashion-MNIST pictures into 4x8x8 latents
//!    (reconstruction loss plus a small KL term, as Stable Diffusion's VAE).
//! 2. With the VAE frozen, every training picture is encoded once; the UNet and the text encoder
//!    then learn together to predict the noise added to those latents, conditioned on captions
//!    ("a red sneaker"), with one caption in ten dropped so classifier-free guidance works.
//!
//! Both stages save resumable checkpoints; the finished model is written in diffusers' folder
//! layout, which the engine loads like any Stable Diffusion checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::checkpoint::{Ema, load_checkpoint, save_checkpoint, save_unet_checkpoints};
pub use super::checkpoint::{
    LatentFit, UNET_STAGE_CHECKPOINTS, checkpoint_paths, checkpoint_step, copy_checkpoint,
    latent_fit_path, save_latent_fit,
};
use super::embedded::{self, EmbeddedArchitecture};
use super::fashion_mnist::FashionMnist;
use super::modules::{TrainTextEncoder, TrainUNet, TrainVae};
use crate::engine::noise;
use crate::engine::scheduler::ScheduleConfig;
use crate::engine::tokenizer::ClipTokenizer;

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct DiffusionTrainConfig {
    /// Fashion-MNIST folder.
    pub data_dir: PathBuf,
    /// Where checkpoints go while training.
    pub work_dir: PathBuf,
    /// Where the finished model is written (diffusers layout).
    pub out_dir: PathBuf,
    /// Folder with the CLIP tokenizer files to use and ship.
    pub tokenizer_dir: PathBuf,
    /// Optimiser steps of the VAE stage.
    pub vae_steps: usize,
    /// Batch size of the VAE stage.
    pub vae_batch: usize,
    /// Optimiser steps of the UNet stage.
    pub unet_steps: usize,
    /// Batch size of the UNet stage.
    pub unet_batch: usize,
    /// Use only the first `n` training images (tests use a few).
    pub limit: Option<usize>,
    /// Seed of everything random in training.
    pub seed: u64,
    /// Continue from the checkpoints in `work_dir`.
    pub resume: bool,
    /// Save a checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Probability that a caption is replaced by the empty prompt.
    pub caption_dropout: f64,
    /// Decay of the exponential moving average of the UNet and text encoder weights; the
    /// average, not the last step's weights, is what gets exported.
    pub ema_decay: f64,
    /// Classes shown more often than the data set holds them: `(class, times)`; a class
    /// the model draws poorly gets more of the UNet's attention this way.
    pub oversample: Vec<(usize, usize)>,
    /// The VAE stage trains only the decoder (and the 1x1 convolution before it) on the frozen
    /// encoder's latents, so the latent space, and every UNet trained on it, stays valid.
    pub decoder_only: bool,
}

impl Default for DiffusionTrainConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(super::fashion_mnist::DEFAULT_DIR),
            work_dir: PathBuf::from("runs/train"),
            out_dir: crate::engine::model::embedded_model_dir(),
            tokenizer_dir: crate::engine::model::embedded_model_dir().join("tokenizer"),
            vae_steps: 1500,
            vae_batch: 16,
            unet_steps: 3000,
            unet_batch: 128,
            limit: None,
            seed: 0,
            resume: false,
            checkpoint_every: 250,
            caption_dropout: 0.1,
            ema_decay: 0.999,
            oversample: Vec::new(),
            decoder_only: false,
        }
    }
}

/// What a stage reports: its losses at the start and at the end.
#[derive(Debug, Clone, Copy)]
pub struct StageReport {
    /// Mean loss over the first steps.
    pub first_loss: f32,
    /// Mean loss over the last steps.
    pub last_loss: f32,
    /// Steps run in this call (fewer than asked when resuming).
    pub steps_run: usize,
    /// Wall time of the stage.
    pub seconds: f64,
}

/// Running mean of the first and last losses of a stage.
struct LossLog {
    first: Vec<f32>,
    last: std::collections::VecDeque<f32>,
    window: usize,
}

impl LossLog {
    fn new(window: usize) -> Self {
        Self {
            first: Vec::new(),
            last: std::collections::VecDeque::new(),
            window,
        }
    }

    fn push(&mut self, loss: f32) {
        if self.first.len() < self.window {
            self.first.push(loss);
        }
        self.last.push_back(loss);
        if self.last.len() > self.window {
            self.last.pop_front();
        }
    }

    fn recent(&self) -> f32 {
        self.last.iter().sum::<f32>() / self.last.len().max(1) as f32
    }

    fn report(&self, steps_run: usize, started: Instant) -> StageReport {
        StageReport {
            first_loss: self.first.iter().sum::<f32>() / self.first.len().max(1) as f32,
            last_loss: self.recent(),
            steps_run,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// A progress bar on a terminal; elsewhere (a log file, CI) a line every 50 steps instead.
fn progress_bar(len: usize, done: usize, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>5} [{elapsed_precise}] {bar:30} {pos}/{len} loss {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_string());
    bar.set_position(done as u64);
    bar
}

/// Logs a line every 50 steps when no progress bar is drawn.
fn log_progress(stage: &str, step: usize, loss: f32) {
    if (step + 1).is_multiple_of(50) {
        tracing::info!(stage, step = step + 1, loss, "training");
    }
}

/// Stage 1: trains the VAE; returns its weights and the stage report.
pub fn train_vae(
    cfg: &DiffusionTrainConfig,
    arch: &EmbeddedArchitecture,
    data: &FashionMnist,
    device: &Device,
) -> Result<(VarMap, StageReport)> {
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let vae = TrainVae::new(vb, 3, 3, &arch.vae_candle())?;
    let start = if cfg.resume {
        load_checkpoint(&mut varmap, &cfg.work_dir, "vae")?.unwrap_or(0)
    } else {
        0
    };
    let (trained, base_lr) = if cfg.decoder_only {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("VAE weights poisoned"))?;
        let decoder: Vec<_> = vars
            .iter()
            .filter(|(name, _)| {
                name.starts_with("decoder.") || name.starts_with("post_quant_conv.")
            })
            .map(|(_, var)| var.clone())
            .collect();
        (decoder, 3e-4)
    } else {
        (varmap.all_vars(), 1e-3)
    };
    let mut opt = AdamW::new(
        trained,
        ParamsAdamW {
            lr: base_lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(noise::derive_seed(cfg.seed, 100 + start as u64));
    let mut log = LossLog::new((cfg.vae_steps.saturating_sub(start) / 4).clamp(1, 50));
    let started = Instant::now();
    let bar = progress_bar(cfg.vae_steps, start, "vae");
    for step in start..cfg.vae_steps {
        let indices: Vec<usize> = (0..cfg.vae_batch)
            .map(|_| rng.random_range(0..data.len()))
            .collect();
        let (pictures, _) = data.diffusion_batch(&indices, &mut rng, device)?;
        let (mean, logvar) = vae.encode(&pictures)?;
        let (mean, logvar) = if cfg.decoder_only {
            (mean.detach(), logvar.detach())
        } else {
            (mean, logvar)
        };
        let logvar = logvar.clamp(-30f32, 20f32)?;
        let eps = noise::gaussian(rng.random(), mean.shape(), device)?;
        let z = (&mean + ((&logvar * 0.5)?.exp()? * eps)?)?;
        let recon = vae.decode(&z)?;
        let rec_loss = (recon - &pictures)?.sqr()?.mean_all()?;
        let loss = if cfg.decoder_only {
            // A cosine decay to a tenth: the decoder is refined, not relearnt.
            let progress = (step - start) as f64 / (cfg.vae_steps - start).max(1) as f64;
            let decay = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            opt.set_learning_rate(base_lr * decay);
            rec_loss.clone()
        } else {
            // KL to N(0, 1), per latent value, weighted lightly as latent diffusion does.
            let kl = (((mean.sqr()? + logvar.exp()?)? - 1.0)? - &logvar)?.mean_all()?;
            (&rec_loss + (kl * 5e-4)?)?
        };
        opt.backward_step(&loss)?;
        let loss = rec_loss.to_scalar::<f32>()?;
        anyhow::ensure!(loss.is_finite(), "VAE loss became {loss} at step {step}");
        log.push(loss);
        bar.set_message(format!("{:.4}", log.recent()));
        bar.inc(1);
        log_progress("vae", step, log.recent());
        if (step + 1) % cfg.checkpoint_every == 0 {
            save_checkpoint(&varmap, &cfg.work_dir, "vae", step + 1)?;
        }
    }
    bar.finish();
    save_checkpoint(&varmap, &cfg.work_dir, "vae", cfg.vae_steps)?;
    let report = log.report(cfg.vae_steps.saturating_sub(start), started);
    tracing::info!(?report, "vae trained");
    Ok((varmap, report))
}

/// The latent fit a run keeps in its work folder (see [`save_latent_fit`]).
pub fn load_latent_fit(work_dir: &Path) -> Result<LatentFit> {
    let path = latent_fit_path(work_dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("cannot read the latent fit in {}", path.display()))
}

/// Encodes the training pictures once with the trained VAE.
struct EncodedSet {
    /// Latent means and standard deviations, `[N, C, h, w]`.
    mean: Tensor,
    std: Tensor,
    captions: Vec<String>,
    /// Class of each picture.
    labels: Vec<u8>,
}

fn encode_dataset(
    vae: &TrainVae,
    data: &FashionMnist,
    seed: u64,
    device: &Device,
) -> Result<(EncodedSet, Tensor)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(noise::derive_seed(seed, 7));
    let mut means = Vec::new();
    let mut stds = Vec::new();
    let mut captions = Vec::with_capacity(data.len());
    let mut some_pictures = None;
    let chunk = 256;
    let bar = progress_bar(data.len(), 0, "enc");
    for start in (0..data.len()).step_by(chunk) {
        let indices: Vec<usize> = (start..(start + chunk).min(data.len())).collect();
        let (pictures, caps) = data.diffusion_batch(&indices, &mut rng, device)?;
        let (mean, logvar) = vae.encode(&pictures.detach())?;
        means.push(mean.detach());
        stds.push((logvar.clamp(-30f32, 20f32)? * 0.5)?.exp()?.detach());
        captions.extend(caps);
        if some_pictures.is_none() {
            some_pictures = Some(pictures);
        }
        bar.inc(indices.len() as u64);
    }
    bar.finish();
    let pictures = some_pictures.context("the training set is empty")?;
    Ok((
        EncodedSet {
            // One chunk's cat is a view of the encoder output; index_select needs contiguity.
            mean: Tensor::cat(&means, 0)?.contiguous()?,
            std: Tensor::cat(&stds, 0)?.contiguous()?,
            captions,
            labels: data.labels().to_vec(),
        },
        pictures,
    ))
}

/// Token ids of each distinct caption, computed once.
struct CaptionIds {
    ids: HashMap<String, Vec<u32>>,
    len: usize,
}

impl CaptionIds {
    fn new(tokenizer: &ClipTokenizer, captions: &[String]) -> Result<Self> {
        let mut ids = HashMap::new();
        for caption in captions.iter().map(String::as_str).chain([""]) {
            if !ids.contains_key(caption) {
                let tokens = tokenizer.encode(caption)?;
                ids.insert(caption.to_string(), tokens.ids);
            }
        }
        Ok(Self {
            ids,
            len: tokenizer.max_len(),
        })
    }

    fn batch(&self, captions: &[&str], device: &Device) -> Result<Tensor> {
        let mut flat = Vec::with_capacity(captions.len() * self.len);
        for caption in captions {
            flat.extend_from_slice(
                self.ids
                    .get(*caption)
                    .context("caption was not tokenized")?,
            );
        }
        Ok(Tensor::from_vec(flat, (captions.len(), self.len), device)?)
    }
}

/// Stage 2: trains the UNet and the text encoder on VAE latents.
pub fn train_unet(
    cfg: &DiffusionTrainConfig,
    arch: &EmbeddedArchitecture,
    encoded: &EncodedLatents,
    tokenizer: &ClipTokenizer,
    device: &Device,
) -> Result<(VarMap, VarMap, StageReport)> {
    let mut unet_map = VarMap::new();
    let mut text_map = VarMap::new();
    let unet = TrainUNet::new(
        VarBuilder::from_varmap(&unet_map, DType::F32, device),
        arch.latent_channels,
        arch.latent_channels,
        &arch.unet_candle(),
    )?;
    let text = TrainTextEncoder::new(
        VarBuilder::from_varmap(&text_map, DType::F32, device).pp("text_model"),
        &arch.text_candle(),
    )?;
    let start = if cfg.resume {
        let a = load_checkpoint(&mut unet_map, &cfg.work_dir, "unet")?;
        let b = load_checkpoint(&mut text_map, &cfg.work_dir, "text_encoder")?;
        a.min(b).unwrap_or(0)
    } else {
        0
    };
    // The averages start from the weights (a run that had none, or a fresh one) and are then
    // replaced by their own checkpoints when those exist.
    let mut unet_ema = Ema::new(&unet_map, cfg.ema_decay)?;
    let mut text_ema = Ema::new(&text_map, cfg.ema_decay)?;
    if cfg.resume && start > 0 {
        let a = load_checkpoint(&mut unet_ema.average, &cfg.work_dir, "unet_ema")?;
        let b = load_checkpoint(&mut text_ema.average, &cfg.work_dir, "text_encoder_ema")?;
        if a.is_some() && b.is_some() {
            // Resumed averages are past their ramp.
            unet_ema.updates = start;
            text_ema.updates = start;
        }
    }
    let mut vars = unet_map.all_vars();
    vars.extend(text_map.all_vars());
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;

    let schedule = ScheduleConfig::default();
    let alphas = schedule.alphas_cumprod();
    let captions = CaptionIds::new(tokenizer, &encoded.set.captions)?;
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(noise::derive_seed(cfg.seed, 200 + start as u64));
    let mut order = epoch_order(&encoded.set.labels, &cfg.oversample);
    let n = order.len();
    order.shuffle(&mut rng);
    let mut cursor = 0;
    let mut log = LossLog::new((cfg.unet_steps.saturating_sub(start) / 4).clamp(1, 50));
    let started = Instant::now();
    let bar = progress_bar(cfg.unet_steps, start, "unet");
    let base_lr = 1e-3;
    for step in start..cfg.unet_steps {
        // Cosine decay after a short warm-up (again after resuming: the optimiser's moments
        // are not in the checkpoint).
        let progress = step as f64 / cfg.unet_steps as f64;
        let warm = ((step - start + 1) as f64 / 100.0).min(1.0);
        opt.set_learning_rate(
            base_lr * warm * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())),
        );

        if cursor + cfg.unet_batch > n {
            order.shuffle(&mut rng);
            cursor = 0;
        }
        let batch: Vec<u32> = order[cursor..cursor + cfg.unet_batch.min(n)]
            .iter()
            .map(|&i| i as u32)
            .collect();
        cursor += batch.len();
        let b = batch.len();
        let index = Tensor::from_vec(batch.clone(), b, device)?;
        let mean = encoded.set.mean.index_select(&index, 0)?;
        let std = encoded.set.std.index_select(&index, 0)?;
        let eps = noise::gaussian(rng.random(), mean.shape(), device)?;
        let x0 = ((mean + (std * eps)?)? * encoded.fit.scaling_factor)?;

        let timesteps: Vec<usize> = (0..b).map(|_| rng.random_range(0..alphas.len())).collect();
        let sqrt_a: Vec<f32> = timesteps.iter().map(|&t| alphas[t].sqrt() as f32).collect();
        let sqrt_1ma: Vec<f32> = timesteps
            .iter()
            .map(|&t| (1.0 - alphas[t]).sqrt() as f32)
            .collect();
        let sqrt_a = Tensor::from_vec(sqrt_a, (b, 1, 1, 1), device)?;
        let sqrt_1ma = Tensor::from_vec(sqrt_1ma, (b, 1, 1, 1), device)?;
        let noise_target = noise::gaussian(rng.random(), x0.shape(), device)?;
        let noisy = (x0.broadcast_mul(&sqrt_a)? + noise_target.broadcast_mul(&sqrt_1ma)?)?;
        let t = Tensor::from_vec(
            timesteps.iter().map(|&t| t as f32).collect::<Vec<_>>(),
            b,
            device,
        )?;

        let texts: Vec<&str> = batch
            .iter()
            .map(|&i| {
                if rng.random::<f64>() < cfg.caption_dropout {
                    ""
                } else {
                    encoded.set.captions[i as usize].as_str()
                }
            })
            .collect();
        let ids = captions.batch(&texts, device)?;
        let context = text.forward(&ids)?;
        let prediction = unet.forward(&noisy, &t, &context)?;
        let loss = (prediction - noise_target)?.sqr()?.mean_all()?;
        opt.backward_step(&loss)?;
        unet_ema.update()?;
        text_ema.update()?;
        let loss = loss.to_scalar::<f32>()?;
        anyhow::ensure!(loss.is_finite(), "UNet loss became {loss} at step {step}");
        log.push(loss);
        bar.set_message(format!("{:.4}", log.recent()));
        bar.inc(1);
        log_progress("unet", step, log.recent());
        if (step + 1) % cfg.checkpoint_every == 0 {
            save_unet_checkpoints(
                cfg,
                [&unet_map, &text_map, &unet_ema.average, &text_ema.average],
                step + 1,
            )?;
        }
    }
    bar.finish();
    save_unet_checkpoints(
        cfg,
        [&unet_map, &text_map, &unet_ema.average, &text_ema.average],
        cfg.unet_steps,
    )?;
    let report = log.report(cfg.unet_steps.saturating_sub(start), started);
    tracing::info!(?report, "unet trained");
    Ok((unet_ema.average, text_ema.average, report))
}

/// The pictures of one epoch: every index once, and the oversampled classes' indices
/// `times` times.
fn epoch_order(labels: &[u8], oversample: &[(usize, usize)]) -> Vec<usize> {
    let times = |label: u8| {
        oversample
            .iter()
            .find(|(class, _)| *class == usize::from(label))
            .map_or(1, |(_, times)| (*times).max(1))
    };
    labels
        .iter()
        .enumerate()
        .flat_map(|(i, &label)| std::iter::repeat_n(i, times(label)))
        .collect()
}

/// The training set in latent space, with the scaling that makes latents unit variance.
pub struct EncodedLatents {
    set: EncodedSet,
    /// The latent scaling and the preview projection.
    pub fit: LatentFit,
}

/// Encodes the data set and fits the latent scaling and the preview projection. With `reuse`,
/// a fit already in the work folder wins over a new one (the new one would differ in the last
/// digits and shift every latent the UNet learnt from); otherwise the new fit is saved there.
pub fn encode_for_unet(
    vae_map: &VarMap,
    arch: &EmbeddedArchitecture,
    data: &FashionMnist,
    seed: u64,
    device: &Device,
    work_dir: &Path,
    reuse: bool,
) -> Result<EncodedLatents> {
    let vae = TrainVae::new(
        VarBuilder::from_varmap(vae_map, DType::F32, device),
        3,
        3,
        &arch.vae_candle(),
    )?;
    let (set, pictures) = encode_dataset(&vae, data, seed, device)?;
    let std = set.mean.flatten_all()?.to_vec1::<f32>()?;
    let mean_v = std.iter().map(|&v| f64::from(v)).sum::<f64>() / std.len() as f64;
    let var = std
        .iter()
        .map(|&v| (f64::from(v) - mean_v).powi(2))
        .sum::<f64>()
        / std.len() as f64;
    let scaling_factor = 1.0 / var.sqrt().max(1e-6);

    // Fit RGB = W * latent + b per latent cell against the picture averaged over each cell.
    let n = pictures.dim(0)?;
    let latents = (set.mean.narrow(0, 0, n)? * scaling_factor)?;
    let down = pictures.avg_pool2d(arch.downscale())?;
    let mut fit = LatentFit {
        scaling_factor,
        latent_rgb: embedded::fit_latent_rgb(&latents, &down)?,
    };
    if reuse && latent_fit_path(work_dir).exists() {
        fit = load_latent_fit(work_dir)?;
        tracing::info!(
            fit.scaling_factor,
            "latent scaling kept from the work folder"
        );
    } else {
        save_latent_fit(work_dir, &fit)?;
    }
    Ok(EncodedLatents { set, fit })
}

/// Mean squared error of VAE reconstructions over some test pictures (for reports).
pub fn vae_test_error(
    vae_map: &VarMap,
    arch: &EmbeddedArchitecture,
    test: &FashionMnist,
    device: &Device,
) -> Result<f32> {
    let vae = TrainVae::new(
        VarBuilder::from_varmap(vae_map, DType::F32, device),
        3,
        3,
        &arch.vae_candle(),
    )?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let indices: Vec<usize> = (0..test.len().min(256)).collect();
    let (pictures, _) = test.diffusion_batch(&indices, &mut rng, device)?;
    let (mean, _) = vae.encode(&pictures)?;
    let recon = vae.decode(&mean)?;
    Ok((recon - pictures)?.sqr()?.mean_all()?.to_scalar::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::epoch_order;

    #[test]
    fn oversampled_classes_appear_that_many_times_per_epoch() {
        let labels = [0u8, 6, 1, 6];
        assert_eq!(epoch_order(&labels, &[]), vec![0, 1, 2, 3]);
        assert_eq!(
            epoch_order(&labels, &[(6, 3)]),
            vec![0, 1, 1, 1, 2, 3, 3, 3]
        );
        // Zero times would drop a class altogether; it counts as once.
        assert_eq!(epoch_order(&labels, &[(0, 0)]), vec![0, 1, 2, 3]);
    }
}
