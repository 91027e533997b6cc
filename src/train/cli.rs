//! `interconcept train` and `interconcept eval`: making the embedded model and judging it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, ValueEnum};

use super::diffusion::{self, DiffusionTrainConfig};
use super::embedded::{self, EmbeddedArchitecture, TrainedParts};
use super::fashion_mnist::{CLASS_NAMES, Colour, FashionMnist, Split, class_prompt};
use super::meter::{MeterTrainConfig, train_meter};
use super::modules::{TrainTextEncoder, TrainUNet, TrainVae};
use crate::engine::config::{VaeJson, read_json};
use crate::engine::meter::ConceptMeter;
use crate::engine::model::{Component, DiffusionModel, embedded_model_dir};
use crate::engine::pipeline::{self, SamplingParams};
use crate::engine::scheduler::SamplerKind;
use crate::engine::tokenizer::ClipTokenizer;

pub use crate::engine::scoring::embedded_meter_dir;

/// Which parts to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    /// The meter, the VAE, then the UNet and text encoder.
    All,
    /// Only the concept meter.
    Meter,
    /// The VAE, then the UNet and text encoder.
    Diffusion,
    /// Only the UNet and text encoder, over the VAE checkpoint in the work folder.
    Unet,
    /// Only the VAE's decoder, from the step of the work folder's VAE checkpoint up to
    /// `--vae-steps`; the encoder, and so the latent space and the UNet trained on it, stay as
    /// they are, and the work folder's UNet and text encoder averages are exported with the new
    /// decoder.
    Decoder,
    /// No training: write a model folder from the checkpoints in the work folder (to look at a
    /// run before it ends).
    Export,
}

/// `interconcept train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Fashion-MNIST folder (Debian's dataset-fashion-mnist package).
    #[arg(long, default_value = super::fashion_mnist::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Where the finished model goes (diffusers layout); without it, over the embedded model in
    /// `assets/model`, whatever `--work` says.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the finished concept meter goes.
    #[arg(long)]
    pub meter_out: Option<PathBuf>,
    /// Checkpoints while training.
    #[arg(long, default_value = "runs/train")]
    pub work: PathBuf,
    /// What to train.
    #[arg(long, value_enum, default_value = "all")]
    pub stage: Stage,
    /// VAE optimiser steps.
    #[arg(long, default_value_t = 1000)]
    pub vae_steps: usize,
    /// UNet optimiser steps.
    #[arg(long, default_value_t = 2000)]
    pub unet_steps: usize,
    /// UNet batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Use only the first N training images.
    #[arg(long, value_parser = parse_count)]
    pub limit: Option<usize>,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the checkpoints in the work folder.
    #[arg(long)]
    pub resume: bool,
    /// Start the UNet stage from a finished model folder (such as assets/model) instead of
    /// from checkpoints: its weights, latent scaling and preview projection are copied into
    /// the work folder first, then training resumes from there.
    #[arg(long, value_name = "DIR")]
    pub init_from: Option<PathBuf>,
    /// The step the `--init-from` model had reached (it sets where the learning-rate schedule
    /// resumes).
    #[arg(long, default_value_t = 0, requires = "init_from")]
    pub init_step: usize,
    /// Show a class more often, e.g. `shirt=3` (repeatable).
    #[arg(long, value_name = "CLASS=TIMES", value_parser = parse_oversample)]
    pub oversample: Vec<(usize, usize)>,
}

/// Parses `--oversample shirt=3`.
fn parse_oversample(text: &str) -> std::result::Result<(usize, usize), String> {
    let (name, times) = text
        .split_once('=')
        .ok_or_else(|| format!("expected CLASS=TIMES, got {text:?}"))?;
    let class = CLASS_NAMES
        .iter()
        .position(|c| *c == name.trim())
        .ok_or_else(|| format!("unknown class {name:?}; the classes are {CLASS_NAMES:?}"))?;
    let times: usize = times
        .trim()
        .parse()
        .map_err(|_| format!("TIMES must be a whole number, got {times:?}"))?;
    if !(1..=100).contains(&times) {
        return Err(format!("TIMES must be 1 to 100, got {times}"));
    }
    Ok((class, times))
}

/// Fills a work folder from a finished model folder, as if a run had saved checkpoints at
/// `step`: the averaged weights the model holds start both the weights and their averages.
///
/// The model is loaded first, so a folder that is not one changes nothing; a work folder that
/// already holds a run is refused rather than overwritten.
fn seed_work_from_model(model_dir: &Path, work: &Path, step: usize) -> Result<()> {
    let model = DiffusionModel::load(model_dir, &Device::Cpu)
        .with_context(|| format!("--init-from {} is not a usable model", model_dir.display()))?;
    let existing = diffusion::checkpoint_paths(work, "unet").0;
    if existing.exists() {
        bail!(
            "the work folder already holds a run ({}); give another --work, or continue it with \
             --resume instead of --init-from",
            existing.display()
        );
    }
    let copies = [
        ("vae/diffusion_pytorch_model.safetensors", "vae"),
        ("unet/diffusion_pytorch_model.safetensors", "unet"),
        ("unet/diffusion_pytorch_model.safetensors", "unet_ema"),
        ("text_encoder/model.safetensors", "text_encoder"),
        ("text_encoder/model.safetensors", "text_encoder_ema"),
    ];
    for (file, stage) in copies {
        diffusion::copy_checkpoint(&model_dir.join(file), work, stage, step)?;
    }
    diffusion::save_latent_fit(
        work,
        &diffusion::LatentFit {
            scaling_factor: model.vae_scaling_factor,
            latent_rgb: model.latent_rgb.clone(),
        },
    )
}

/// The decoder stage refines a finished run: its work folder must hold the VAE, the latent fit
/// and the UNet and text encoder it exports with, and the VAE must be short of `vae_steps`.
fn check_decoder_work(work: &Path, vae_steps: usize) -> Result<()> {
    let step = diffusion::checkpoint_step(work, "vae")?.with_context(|| {
        format!(
            "--stage decoder refines a finished run, but {} holds no VAE checkpoint; start from \
             a model with --init-from",
            work.display()
        )
    })?;
    let needed = [
        diffusion::latent_fit_path(work),
        diffusion::checkpoint_paths(work, "unet").0,
        diffusion::checkpoint_paths(work, "text_encoder").0,
    ];
    if let Some(missing) = needed.iter().find(|path| !path.is_file()) {
        bail!(
            "--stage decoder exports the run's UNet and text encoder with its latent fit, but \
             {} is missing",
            missing.display()
        );
    }
    if step >= vae_steps {
        bail!(
            "the VAE in {} is at step {step}, which leaves the decoder nothing to train: \
             --vae-steps must be larger",
            work.display()
        );
    }
    Ok(())
}

/// Refuses option combinations that would do something else than asked, before any work.
fn check_options(args: &TrainArgs) -> Result<()> {
    if args.init_from.is_some() {
        if !matches!(args.stage, Stage::Unet | Stage::Decoder) {
            bail!("--init-from continues a trained model: add --stage unet or --stage decoder");
        }
        if args.resume {
            bail!("--init-from starts a run and --resume continues one: give only one");
        }
        // Checked before the work folder is filled from the model.
        if args.stage == Stage::Decoder && args.init_step >= args.vae_steps {
            bail!(
                "--init-step {} leaves the decoder nothing to train: --vae-steps must be larger",
                args.init_step
            );
        }
        if args.stage == Stage::Unet && args.init_step >= args.unet_steps {
            bail!(
                "--init-step {} leaves nothing to train: --unet-steps must be larger",
                args.init_step
            );
        }
    }
    if !args.oversample.is_empty()
        && matches!(args.stage, Stage::Meter | Stage::Export | Stage::Decoder)
    {
        bail!(
            "--oversample shapes UNet training, which --stage meter, export and decoder do not run"
        );
    }
    for (i, (class, _)) in args.oversample.iter().enumerate() {
        if args.oversample[..i].iter().any(|(c, _)| c == class) {
            bail!("--oversample names {} twice", CLASS_NAMES[*class]);
        }
    }
    Ok(())
}

/// Runs `interconcept train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    let device = Device::Cpu;
    let out = args.out.clone().unwrap_or_else(embedded_model_dir);
    let meter_out = args.meter_out.clone().unwrap_or_else(embedded_meter_dir);
    check_options(args)?;

    if matches!(args.stage, Stage::All | Stage::Meter) {
        let report = train_meter(&MeterTrainConfig {
            data_dir: args.data.clone(),
            out_dir: meter_out.clone(),
            max_train_images: args.limit,
            seed: args.seed,
            progress_bar: true,
            ..Default::default()
        })?;
        println!(
            "concept meter: {:.2}% on {} test images, trained in {:.0} s -> {}",
            report.test_accuracy * 100.0,
            report.num_test_images,
            report.train_seconds,
            meter_out.display()
        );
    }
    if args.stage == Stage::Meter {
        return Ok(());
    }
    if let Some(model_dir) = &args.init_from {
        seed_work_from_model(model_dir, &args.work, args.init_step)?;
    }

    if args.stage == Stage::Decoder {
        check_decoder_work(&args.work, args.vae_steps)?;
    }

    let mut data = FashionMnist::load(&args.data, Split::Train)?;
    if let Some(limit) = args.limit {
        data = data.truncated(limit);
    }
    let test = FashionMnist::load(&args.data, Split::Test)?;
    let cfg = DiffusionTrainConfig {
        data_dir: args.data.clone(),
        work_dir: args.work.clone(),
        out_dir: out.clone(),
        tokenizer_dir: embedded_model_dir().join("tokenizer"),
        vae_steps: args.vae_steps,
        unet_steps: args.unet_steps,
        unet_batch: args.batch,
        limit: args.limit,
        seed: args.seed,
        resume: args.resume || matches!(args.stage, Stage::Unet | Stage::Decoder),
        oversample: args.oversample.clone(),
        decoder_only: args.stage == Stage::Decoder,
        ..Default::default()
    };
    let arch = EmbeddedArchitecture::default();
    let tokenizer = ClipTokenizer::from_dir(&cfg.tokenizer_dir)?;

    // The VAE either comes from the work folder or is trained (or finished) here.
    let (vae_map, vae_trained) = if matches!(args.stage, Stage::Unet | Stage::Export) {
        let map = load_checkpoint(&args.work.join("vae.safetensors"), |vb| {
            TrainVae::new(vb, 3, 3, &arch.vae_candle()).map(|_| ())
        })?;
        (map, false)
    } else {
        let (map, report) = diffusion::train_vae(&cfg, &arch, &data, &device)?;
        println!(
            "vae: loss {:.4} -> {:.4} in {:.0} s",
            report.first_loss, report.last_loss, report.seconds
        );
        (map, report.steps_run > 0)
    };
    println!(
        "vae: test reconstruction MSE {:.4}",
        diffusion::vae_test_error(&vae_map, &arch, &test, &device)?
    );

    // A VAE that changed in this run needs a new latent fit; otherwise the run's own stays. A
    // new decoder leaves the latents as they were: nothing is encoded again.
    let (encoded, fit) = if args.stage == Stage::Decoder {
        (None, diffusion::load_latent_fit(&args.work)?)
    } else {
        let encoded = diffusion::encode_for_unet(
            &vae_map,
            &arch,
            &data,
            args.seed,
            &device,
            &args.work,
            !vae_trained,
        )?;
        let fit = encoded.fit.clone();
        (Some(encoded), fit)
    };
    let (unet_map, text_map) = if let (Stage::Unet | Stage::Diffusion | Stage::All, Some(encoded)) =
        (args.stage, &encoded)
    {
        let (unet, text, report) =
            diffusion::train_unet(&cfg, &arch, encoded, &tokenizer, &device)?;
        println!(
            "unet: loss {:.4} -> {:.4} in {:.0} s",
            report.first_loss, report.last_loss, report.seconds
        );
        (unet, text)
    } else {
        // Export the weight averages when the run kept them (runs before averaging did not).
        let averaged = args.work.join("unet_ema.safetensors").is_file()
            && args.work.join("text_encoder_ema.safetensors").is_file();
        let suffix = if averaged { "_ema" } else { "" };
        let unet = load_checkpoint(&args.work.join(format!("unet{suffix}.safetensors")), |vb| {
            TrainUNet::new(
                vb,
                arch.latent_channels,
                arch.latent_channels,
                &arch.unet_candle(),
            )
            .map(|_| ())
        })?;
        let text = load_checkpoint(
            &args.work.join(format!("text_encoder{suffix}.safetensors")),
            |vb| TrainTextEncoder::new(vb.pp("text_model"), &arch.text_candle()).map(|_| ()),
        )?;
        (unet, text)
    };
    embedded::export(
        &arch,
        &TrainedParts {
            unet: &unet_map,
            vae: &vae_map,
            text_encoder: &text_map,
            scaling_factor: fit.scaling_factor,
            latent_rgb: fit.latent_rgb,
        },
        &cfg.tokenizer_dir,
        &out,
    )?;
    println!(
        "model written to {} in {:.1} min in all",
        out.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// Builds a module's variables with `build`, then fills them from a checkpoint.
fn load_checkpoint(
    path: &Path,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
) -> Result<VarMap> {
    let mut map = VarMap::new();
    build(VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu))?;
    map.load(path).with_context(|| {
        format!(
            "no usable checkpoint at {}; train that stage first",
            path.display()
        )
    })?;
    Ok(map)
}

/// `interconcept eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Seeds per class prompt.
    #[arg(long, default_value_t = 20, value_parser = parse_count)]
    pub seeds: usize,
    /// The first seed (the seeds run from it up): another range measures on pictures that
    /// played no part in choosing settings by this measure.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Denoising steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Guidance scale.
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f64,
    /// Concept meter folder.
    #[arg(long)]
    pub meter: Option<PathBuf>,
    /// Fail unless at least this share of all pictures is recognised (0..1).
    #[arg(long)]
    pub require: Option<f32>,
    /// Also measure the meter on this many real test pictures of each class, as they are and
    /// after a round trip through the model's VAE: the ceiling a drawing of the class meets.
    #[arg(long, value_name = "PER_CLASS", value_parser = parse_count)]
    pub reference: Option<usize>,
    /// Fashion-MNIST folder, for `--reference`.
    #[arg(long, default_value = super::fashion_mnist::DEFAULT_DIR)]
    pub data: PathBuf,
}

/// Parses a count of pictures (`--reference`, `--seeds`, `--limit`): 1 or more.
fn parse_count(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "expected a whole number of pictures, 1 or more, got {text:?}"
        )),
    }
}

/// One class's share of real test pictures the meter recognises, as they are and through the
/// VAE.
#[derive(Debug, Clone)]
pub struct ReferenceScore {
    /// The class prompt.
    pub prompt: String,
    /// Real pictures recognised.
    pub real: usize,
    /// Their VAE reconstructions recognised.
    pub reconstructed: usize,
    /// Pictures of the class measured.
    pub total: usize,
}

/// The meter on the first `per_class` test pictures of every class, tinted through the
/// palette in turn, and on their reconstructions by `model`'s VAE (encoder mean, decoder).
pub fn reference_scores(
    model: &DiffusionModel,
    meter: &ConceptMeter,
    test: &FashionMnist,
    per_class: usize,
) -> Result<Vec<ReferenceScore>> {
    let vae_config: VaeJson = read_json(&model.dir.join("vae").join("config.json"))?;
    let vae = TrainVae::new(
        model
            .store(Component::Vae)
            .var_builder(DType::F32, &model.device),
        vae_config.in_channels,
        vae_config.out_channels,
        &vae_config.to_candle(),
    )?;
    let mut scores = Vec::new();
    for class in 0..CLASS_NAMES.len() {
        let indices: Vec<usize> = (0..test.len())
            .filter(|&i| test.label(i) == Some(class))
            .take(per_class)
            .collect();
        if indices.is_empty() {
            bail!("the test set has no pictures of class {class}");
        }
        let tints: Vec<_> = (0..indices.len())
            .map(|i| Colour::ALL[i % Colour::ALL.len()])
            .collect();
        let pictures = test.pictures(&indices, &tints, &model.device)?;
        let (mean, _) = vae.encode(&pictures.affine(2.0, -1.0)?)?;
        let decoded = ((vae.decode(&mean)? + 1.0)? / 2.0)?.clamp(0f32, 1f32)?;
        let hits = |labels: Vec<(usize, f32)>| labels.iter().filter(|(l, _)| *l == class).count();
        scores.push(ReferenceScore {
            prompt: class_prompt(class),
            real: hits(meter.classify(&pictures)?),
            reconstructed: hits(meter.classify(&decoded)?),
            total: indices.len(),
        });
    }
    Ok(scores)
}

/// One class's result in an evaluation.
#[derive(Debug, Clone)]
pub struct ClassScore {
    /// The prompt.
    pub prompt: String,
    /// Pictures the meter labels as the prompt's class.
    pub recognised: usize,
    /// Pictures made.
    pub total: usize,
}

pub use crate::engine::scoring::pictures_to_tensor;

/// Generates a picture of each class prompt for every seed in `seeds` and asks the meter what
/// they show.
pub fn evaluate(
    model: &DiffusionModel,
    meter: &ConceptMeter,
    seeds: std::ops::Range<u64>,
    params: &SamplingParams,
) -> Result<Vec<ClassScore>> {
    let mut scores = Vec::new();
    for class in 0..CLASS_NAMES.len() {
        let prompt = class_prompt(class);
        let seed_list: Vec<u64> = seeds.clone().collect();
        let count = seed_list.len();
        let (cond, _) = model.encode_prompts(&[prompt.as_str()])?;
        let cond = cond.repeat((count, 1, 1))?;
        let initial = pipeline::initial_noise_batch(model, &seed_list, params)?;
        let pictures =
            pipeline::generate(model, &cond, &initial, &seed_list, params, &mut |_| true)?;
        let labels = meter.classify(&pictures_to_tensor(&pictures, &model.device)?)?;
        let recognised = labels.iter().filter(|(label, _)| *label == class).count();
        scores.push(ClassScore {
            prompt,
            recognised,
            total: count,
        });
    }
    Ok(scores)
}

/// Runs `interconcept eval`.
pub fn eval(model_dir: &Path, args: &EvalArgs) -> Result<()> {
    let model = DiffusionModel::load(model_dir, &Device::Cpu)?;
    let meter_dir = args.meter.clone().unwrap_or_else(embedded_meter_dir);
    let meter = ConceptMeter::load(&meter_dir)?;
    // The test set, when asked for, before minutes of generating.
    let test = args
        .reference
        .map(|_| FashionMnist::load(&args.data, Split::Test))
        .transpose()?;
    let params = SamplingParams {
        num_steps: args.steps,
        guidance_scale: args.guidance,
        sampler: SamplerKind::Ddim,
        width: model.default_size,
        height: model.default_size,
    };
    let seeds = args.first_seed..args.first_seed.saturating_add(args.seeds as u64);
    let scores = evaluate(&model, &meter, seeds, &params)?;
    let mut recognised = 0;
    let mut total = 0;
    for s in &scores {
        println!(
            "{:<24} {:>3}/{:<3} {:5.1}%",
            s.prompt,
            s.recognised,
            s.total,
            100.0 * s.recognised as f64 / s.total as f64
        );
        recognised += s.recognised;
        total += s.total;
    }
    let share = recognised as f32 / total.max(1) as f32;
    let worst = scores
        .iter()
        .map(|s| s.recognised as f32 / s.total.max(1) as f32)
        .fold(1.0, f32::min);
    println!(
        "overall {recognised}/{total} {:.1}%, worst prompt {:.1}%",
        share * 100.0,
        worst * 100.0
    );
    if let (Some(per_class), Some(test)) = (args.reference, &test) {
        println!("real test pictures recognised, as they are / through the VAE:");
        for r in reference_scores(&model, &meter, test, per_class)? {
            let pct = |n: usize| 100.0 * n as f64 / r.total as f64;
            println!(
                "{:<24} {:5.1}% / {:5.1}% of {}",
                r.prompt,
                pct(r.real),
                pct(r.reconstructed),
                r.total
            );
        }
    }
    if let Some(required) = args.require
        && share < required
    {
        bail!(
            "{:.1}% recognised, {:.1}% required",
            share * 100.0,
            required * 100.0
        );
    }
    Ok(())
}
