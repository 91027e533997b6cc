//! Training and evaluating the concept meter ([`ConceptMeter`]) on Fashion-MNIST: seeded
//! initialisation, augmented batches that mimic generated pictures (dimmer garments, off-centre
//! placement), the AdamW loop, test-split evaluation, and writing the checkpoint atomically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer as _, ParamsAdamW, VarBuilder, VarMap};
use rand::seq::SliceRandom as _;
use rand::{Rng, SeedableRng as _};
use rand_distr::{Distribution as _, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::engine::meter::{CONFIG_FILE, ConceptMeter, INPUT_SIDE, MeterConfig, WEIGHTS_FILE};
use crate::train::fashion_mnist::{CLASS_NAMES, Colour, FashionMnist, Split};

/// Settings of a meter training run.
#[derive(Clone, Debug)]
pub struct MeterTrainConfig {
    /// Directory holding the Fashion-MNIST IDX files.
    pub data_dir: PathBuf,
    /// Where `meter.safetensors` and `config.json` are written.
    pub out_dir: PathBuf,
    /// Passes over the training images.
    pub epochs: usize,
    /// Stop after this many optimiser steps, if given, even mid-epoch.
    pub max_steps: Option<usize>,
    /// Use only the first this many training images, if given.
    pub max_train_images: Option<usize>,
    /// Evaluate on only the first this many test images, if given.
    pub max_test_images: Option<usize>,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate; it decays to zero along a cosine.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Probability that a training image is augmented (dimmed and shifted); the others are
    /// seen as they are.
    pub augment_probability: f64,
    /// Lower end of the random intensity scale (the upper end is 1.0).
    pub min_intensity: f32,
    /// Largest random shift in pixels, in each direction.
    pub max_shift: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Show an indicatif progress bar.
    pub progress_bar: bool,
}

impl Default for MeterTrainConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(crate::train::fashion_mnist::DEFAULT_DIR),
            out_dir: PathBuf::from("assets/meter"),
            epochs: 2,
            max_steps: None,
            max_train_images: None,
            max_test_images: None,
            batch_size: 64,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            augment_probability: 0.5,
            min_intensity: 0.6,
            max_shift: 2,
            seed: 20_251_112,
            progress_bar: false,
        }
    }
}

/// What a training run produced.
#[derive(Clone, Debug)]
pub struct MeterReport {
    /// Optimiser steps taken.
    pub steps: usize,
    /// Training loss at every step.
    pub loss_history: Vec<f32>,
    /// Accuracy on the (possibly truncated) test split.
    pub test_accuracy: f32,
    /// Number of test images evaluated.
    pub num_test_images: usize,
    /// Seconds spent training (without loading and evaluation).
    pub train_seconds: f64,
    /// Seconds for the whole run.
    pub total_seconds: f64,
    /// Directory the checkpoint was written to.
    pub out_dir: PathBuf,
}

/// A trained meter with the variables behind it.
pub struct FittedMeter {
    /// The meter, sharing its weights with `varmap`.
    pub meter: ConceptMeter,
    /// The trained variables, ready to save.
    pub varmap: VarMap,
    /// Training loss at every step.
    pub loss_history: Vec<f32>,
}

impl std::fmt::Debug for FittedMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FittedMeter")
            .field("meter", &self.meter)
            .field("steps", &self.loss_history.len())
            .finish_non_exhaustive()
    }
}

/// Trains the meter on the training split, evaluates it on the test split and writes the
/// checkpoint to `cfg.out_dir`.
pub fn train_meter(cfg: &MeterTrainConfig) -> anyhow::Result<MeterReport> {
    let started = Instant::now();
    let device = Device::Cpu;
    let mut train = FashionMnist::load(&cfg.data_dir, Split::Train)?;
    if let Some(limit) = cfg.max_train_images {
        train = train.truncated(limit);
    }
    let mut test = FashionMnist::load(&cfg.data_dir, Split::Test)?;
    if let Some(limit) = cfg.max_test_images {
        test = test.truncated(limit);
    }
    tracing::info!(
        train = train.len(),
        test = test.len(),
        "Fashion-MNIST loaded"
    );

    let fit_started = Instant::now();
    let fitted = fit_meter(&train, cfg, &device)?;
    let train_seconds = fit_started.elapsed().as_secs_f64();

    let test_accuracy = evaluate_meter(&fitted.meter, &test)?;
    tracing::info!(test_accuracy, train_seconds, "meter trained");
    let mut config = fitted.meter.config().clone();
    config.test_accuracy = Some(test_accuracy);
    save_meter(&fitted.varmap, &config, &cfg.out_dir)?;
    tracing::info!(dir = %cfg.out_dir.display(), "meter written");

    Ok(MeterReport {
        steps: fitted.loss_history.len(),
        loss_history: fitted.loss_history,
        test_accuracy,
        num_test_images: test.len(),
        train_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        out_dir: cfg.out_dir.clone(),
    })
}

/// Runs the training loop on `train` and returns the fitted meter; nothing is written.
pub fn fit_meter(
    train: &FashionMnist,
    cfg: &MeterTrainConfig,
    device: &Device,
) -> anyhow::Result<FittedMeter> {
    anyhow::ensure!(!train.is_empty(), "no training images");
    anyhow::ensure!(cfg.batch_size > 0, "batch size must be positive");
    anyhow::ensure!(
        (0.0..=1.0).contains(&cfg.min_intensity),
        "min_intensity {} is not in [0, 1]",
        cfg.min_intensity
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);

    // Build the network on variables initialised from our own seeded generator: candle's CPU
    // generator cannot be seeded, so its default initialisation would not be reproducible.
    let config = MeterConfig::new(CLASS_NAMES.iter().map(|&n| n.to_owned()).collect());
    let varmap = seeded_varmap(&config, &mut rng, device)?;
    let meter = ConceptMeter::new(config, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let params = ParamsAdamW {
        lr: cfg.learning_rate,
        weight_decay: cfg.weight_decay,
        ..ParamsAdamW::default()
    };
    let mut optimiser = AdamW::new(varmap.all_vars(), params)?;

    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let total_steps = (cfg.epochs * steps_per_epoch).min(cfg.max_steps.unwrap_or(usize::MAX));
    let bar = if cfg.progress_bar {
        indicatif::ProgressBar::new(total_steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let log_every = (total_steps / 20).max(1);
    let mut loss_history = Vec::with_capacity(total_steps);
    let mut order: Vec<usize> = (0..train.len()).collect();

    'epochs: for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for indices in order.chunks(cfg.batch_size) {
            let step = loss_history.len();
            if step >= total_steps {
                break 'epochs;
            }

            // Cosine decay from the peak learning rate to zero.
            let progress = step as f64 / total_steps as f64;
            let lr = cfg.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            optimiser.set_learning_rate(lr);

            let (grey, labels) = augmented_batch(train, indices, cfg, &mut rng, device)?;
            let logits = meter.logits_from_grey(&grey)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
            optimiser.backward_step(&loss)?;

            let loss = loss.to_scalar::<f32>()?;
            loss_history.push(loss);
            bar.inc(1);
            bar.set_message(format!("loss {loss:.3}"));
            if step % log_every == 0 || step + 1 == total_steps {
                tracing::info!(epoch, step, total_steps, loss, lr, "meter training");
            }
        }
    }
    bar.finish_and_clear();
    Ok(FittedMeter {
        meter,
        varmap,
        loss_history,
    })
}

/// Fills a `VarMap` with every parameter of `config`: He-normal weights, zero biases.
fn seeded_varmap(
    config: &MeterConfig,
    rng: &mut impl Rng,
    device: &Device,
) -> anyhow::Result<VarMap> {
    let varmap = VarMap::new();
    {
        let mut vars = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?;
        for (name, shape) in config.parameter_shapes() {
            let len: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".weight") {
                let fan_in: usize = shape[1..].iter().product();
                let normal = Normal::new(0.0, (2.0 / fan_in as f32).sqrt())?;
                (0..len).map(|_| normal.sample(rng)).collect()
            } else {
                vec![0.0; len]
            };
            let tensor = Tensor::from_vec(values, shape, device)?;
            vars.insert(name.to_owned(), Var::from_tensor(&tensor)?);
        }
    }
    Ok(varmap)
}

/// Grey images `[B, 1, 28, 28]` in [0, 1], some with a random intensity scale and a random
/// shift (background fills in), and their labels `[B]`.
fn augmented_batch(
    data: &FashionMnist,
    indices: &[usize],
    cfg: &MeterTrainConfig,
    rng: &mut impl Rng,
    device: &Device,
) -> anyhow::Result<(Tensor, Tensor)> {
    let side = INPUT_SIDE as i32;
    let max_shift = i32::try_from(cfg.max_shift).context("max_shift too large")?;
    let mut pixels = vec![0f32; indices.len() * INPUT_SIDE * INPUT_SIDE];
    let mut labels = Vec::with_capacity(indices.len());
    for (&index, out) in indices
        .iter()
        .zip(pixels.chunks_exact_mut(INPUT_SIDE * INPUT_SIDE))
    {
        let image = data.image(index).context("image index out of range")?;
        labels.push(data.label(index).context("label index out of range")? as u32);
        let (scale, dy, dx) = if rng.random::<f64>() < cfg.augment_probability {
            (
                rng.random_range(cfg.min_intensity..=1.0),
                rng.random_range(-max_shift..=max_shift),
                rng.random_range(-max_shift..=max_shift),
            )
        } else {
            (1.0, 0, 0)
        };
        let scale = scale / 255.0;
        for y in 0..side {
            let source_y = y - dy;
            if !(0..side).contains(&source_y) {
                continue;
            }
            for x in 0..side {
                let source_x = x - dx;
                if (0..side).contains(&source_x) {
                    let value = image[(source_y * side + source_x) as usize];
                    out[(y * side + x) as usize] = f32::from(value) * scale;
                }
            }
        }
    }
    let grey = Tensor::from_vec(pixels, (indices.len(), 1, INPUT_SIDE, INPUT_SIDE), device)?;
    let labels = Tensor::from_vec(labels, indices.len(), device)?;
    Ok((grey, labels))
}

/// Accuracy of `meter` on `data`, measured through the picture path the program uses: each
/// image is padded to 32x32 and tinted (cycling through the palette) before classification.
pub fn evaluate_meter(meter: &ConceptMeter, data: &FashionMnist) -> anyhow::Result<f32> {
    anyhow::ensure!(!data.is_empty(), "no images to evaluate on");
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0usize;
    for chunk in indices.chunks(500) {
        let tints: Vec<Colour> = chunk
            .iter()
            .map(|&i| Colour::ALL[i % Colour::ALL.len()])
            .collect();
        let pictures = data.pictures(chunk, &tints, meter.device())?;
        let predicted = meter.classify(&pictures)?;
        correct += chunk
            .iter()
            .zip(&predicted)
            .filter(|&(&i, &(class, _))| data.label(i) == Some(class))
            .count();
    }
    Ok(correct as f32 / data.len() as f32)
}

/// Writes `meter.safetensors` and `config.json` into `out_dir`, each through a temporary
/// file and a rename so that a reader never sees half a checkpoint file.
pub fn save_meter(varmap: &VarMap, config: &MeterConfig, out_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let weights_path = out_dir.join(WEIGHTS_FILE);
    let weights_tmp = out_dir.join(format!("{WEIGHTS_FILE}.tmp"));
    varmap
        .save(&weights_tmp)
        .with_context(|| format!("cannot write {}", weights_tmp.display()))?;

    let config_path = out_dir.join(CONFIG_FILE);
    let config_tmp = out_dir.join(format!("{CONFIG_FILE}.tmp"));
    let text = serde_json::to_string_pretty(config)? + "\n";
    std::fs::write(&config_tmp, text)
        .with_context(|| format!("cannot write {}", config_tmp.display()))?;

    for (tmp, path) in [(weights_tmp, weights_path), (config_tmp, config_path)] {
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
