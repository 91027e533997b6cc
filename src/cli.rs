//! The command line: the same engine as the window, headless, for batch experiments and tests.
//!
//! With no subcommand the explorer window opens on the embedded model. Every error reaches the
//! user as one line on stderr and a non-zero exit; nothing here panics on bad input.

mod model_arg;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use clap::{Args, Parser, Subcommand};

use crate::cli_navigator::{LineArgs, PlaneArgs, SampleArgs};
use crate::engine::model::DiffusionModel;
use crate::engine::pipeline::{self, Picture, SamplingParams};
use crate::engine::scheduler::SamplerKind;
use crate::mosaic::MosaicRecord;
use crate::navigator;
use crate::recipe::{self, Recipe};

/// Explore what a text-to-image diffusion model can imagine.
#[derive(Debug, Parser)]
#[command(name = "interconcept", version, about)]
pub struct Cli {
    /// What to do; without a subcommand the explorer window opens.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The model: a diffusers folder, a single-file .safetensors checkpoint (A1111/ComfyUI
    /// layout), or a Hugging Face id ORG/NAME (the local cache, else a download); defaults to
    /// the embedded model.
    #[arg(long, global = true)]
    pub model: Option<String>,

    /// Where to compute: cpu, cuda, cuda:N, metal (GPUs need a build with that feature).
    /// Defaults to the CPU for commands, and to a GPU when there is one for the window.
    #[arg(long, global = true)]
    pub device: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make one picture and write it as PNG with its recipe inside.
    Generate(GenerateArgs),
    /// A grid of pictures on a plane through a prompt's point (or through its initial noise).
    Plane(PlaneArgs),
    /// Pictures along the line between two prompts' points, and beyond its ends.
    Line(LineArgs),
    /// Pictures at random points of interconcept space.
    Sample(SampleArgs),
    /// Make a picture again from a recipe (JSON file, or a PNG made by the program).
    Replay(ReplayArgs),
    /// Train the embedded model and the concept meter from Fashion-MNIST.
    Train(crate::train::cli::TrainArgs),
    /// Measure how well the model draws each class, with the concept meter.
    Eval(crate::train::cli::EvalArgs),
    /// Time generation on this machine.
    Bench(crate::bench::BenchArgs),
    /// Print a prompt's CLIP token ids, space-separated.
    Tokenize(TokenizeArgs),
    /// List a component's modules: the parts that can be knocked out, randomized or scaled.
    Modules(crate::surgery_cli::ModulesArgs),
    /// Make one picture per module (or per edit strength) with an edit applied: a mosaic of
    /// what the damaged minds imagine.
    Sweep(crate::sweep::SweepArgs),
    /// Put the tiles that sharded runs (`--shard K/N --out-dir DIR`) wrote into one mosaic;
    /// names every tile still missing.
    Merge(crate::shard::MergeArgs),
}

/// Sampling options shared by the commands that generate.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Denoising steps [default: 20; 1 for Turbo models].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale, 1 or less turns guidance off [default: 4; off for Turbo
    /// models].
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Sampler: ddim or euler_ancestral.
    #[arg(long, default_value = "ddim", value_parser = parse_sampler)]
    pub scheduler: SamplerKind,
    /// Picture width; defaults to the model's native size.
    #[arg(long)]
    pub width: Option<usize>,
    /// Picture height; defaults to the model's native size.
    #[arg(long)]
    pub height: Option<usize>,
}

fn parse_sampler(name: &str) -> Result<SamplerKind, String> {
    SamplerKind::parse(name).ok_or_else(|| {
        let names: Vec<_> = SamplerKind::ALL.iter().map(|k| k.name()).collect();
        format!(
            "unknown scheduler {name}; choose one of {}",
            names.join(", ")
        )
    })
}

impl SamplingArgs {
    /// The sampling parameters for a model: what was given, else the model variant's defaults
    /// and native size.
    pub fn params(&self, model: &DiffusionModel) -> SamplingParams {
        SamplingParams {
            num_steps: self.steps.unwrap_or(model.variant.default_steps()),
            guidance_scale: self.guidance.unwrap_or(model.variant.default_guidance()),
            sampler: self.scheduler,
            width: self.width.unwrap_or(model.default_size),
            height: self.height.unwrap_or(model.default_size),
        }
    }
}

/// `interconcept generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt; empty for unconditional generation.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the recipe as JSON beside the PNG.
    #[arg(long)]
    pub recipe_json: bool,
    /// Start from this latent instead of the seeded one: a .npy file of float32 with shape
    /// [1, 4, height/8, width/8] (the picture size follows from it); its hash goes into the
    /// recipe.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub edits: crate::surgery_cli::EditArgs,
}

/// `interconcept replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A recipe JSON file, or a PNG with a recipe inside (a picture or a mosaic).
    pub recipe: PathBuf,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// The tile of a mosaic to make again: ROW,COLUMN (from 0) or its index.
    #[arg(long)]
    pub tile: Option<String>,
    /// The .npy initial latent, for recipes made with `generate --noise`.
    #[arg(long)]
    pub noise: Option<PathBuf>,
}

/// `interconcept tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// The prompt.
    pub prompt: String,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let model = || model_arg::model_path(cli.model.as_deref());
    let device = cli.device.as_deref();
    match cli.command {
        None => {
            let device = device.map(|d| model_arg::device(Some(d))).transpose()?;
            crate::gui::run_gui(model()?, device)
        }
        Some(Command::Generate(args)) => generate(&model()?, device, &args),
        Some(Command::Replay(args)) => replay(&model()?, device, &args),
        Some(Command::Plane(args)) => {
            crate::cli_navigator::plane(&model()?, &model_arg::device(device)?, &args)
        }
        Some(Command::Line(args)) => {
            crate::cli_navigator::line(&model()?, &model_arg::device(device)?, &args)
        }
        Some(Command::Sample(args)) => {
            crate::cli_navigator::sample(&model()?, &model_arg::device(device)?, &args)
        }
        Some(Command::Train(args)) => crate::train::cli::train(&args),
        Some(Command::Eval(args)) => crate::train::cli::eval(&model()?, &args),
        Some(Command::Bench(args)) => crate::bench::run(&model()?, &args),
        Some(Command::Modules(args)) => {
            crate::surgery_cli::modules(&model()?, &model_arg::device(device)?, &args)
        }
        Some(Command::Sweep(args)) => {
            crate::sweep::run(&model()?, &model_arg::device(device)?, &args)
        }
        Some(Command::Merge(args)) => crate::shard::merge(&args),
        Some(Command::Tokenize(args)) => {
            let tokenizer = crate::engine::tokenizer::ClipTokenizer::from_dir(
                &model_arg::tokenizer_dir(&model()?),
            )?;
            let tokens = tokenizer.encode(&args.prompt)?;
            if let Some(cut) = &tokens.truncated {
                warn_truncated(tokenizer.max_len(), cut);
            }
            let ids: Vec<String> = tokens.ids[..tokens.num_tokens]
                .iter()
                .map(u32::to_string)
                .collect();
            println!("{}", ids.join(" "));
            Ok(())
        }
    }
}

/// Checks that the output can be written before any expensive work.
pub(crate) fn check_output(path: &std::path::Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a folder", path.display());
    }
    Ok(())
}

/// Makes one picture from a recipe: applies its weight edits to the model (undoing any
/// others), then generates from seeded noise, or from `initial` when given. Records in the
/// recipe whether the model produced NaN or infinity.
pub fn render(
    model: &mut DiffusionModel,
    recipe: &mut Recipe,
    initial: Option<Tensor>,
) -> Result<Picture> {
    pipeline::validate(model, &recipe.sampling)?;
    crate::engine::surgery::apply_edits(model, &recipe.edits)?;
    // The prompt's own point is made from its tokens: say what truncation cut.
    if recipe.point.is_none()
        && let Some(cut) = model.tokenizer.encode(&recipe.prompt)?.truncated
    {
        warn_truncated(model.tokenizer.max_len(), &cut);
    }
    let picture = match initial {
        // Seeded noise: the navigator's renderer, which also resolves concept and noise points.
        None => navigator::render_recipe(model, recipe)?,
        Some(initial) => {
            let (conditioning, _) = model.encode_prompts(&[recipe.prompt.as_str()])?;
            let mut pictures = pipeline::generate(
                model,
                &conditioning,
                &initial,
                &[recipe.seed],
                &recipe.sampling,
                &mut |_| true,
            )?;
            pictures.pop().context("no picture came out")?
        }
    };
    recipe.non_finite = picture.non_finite;
    Ok(picture)
}

/// Makes one picture from a recipe and writes it; `initial` replaces the seeded initial
/// latent when given.
pub fn make_picture(
    model: &mut DiffusionModel,
    recipe: &mut Recipe,
    initial: Option<Tensor>,
    out: &std::path::Path,
) -> Result<()> {
    let picture = render(model, recipe, initial)?;
    if picture.non_finite {
        eprintln!("warning: the model produced NaN or infinity; the picture is a marker");
    }
    recipe::write_png(out, &picture, &recipe.to_json())
}

/// Tells the user what truncation cut from a prompt.
fn warn_truncated(max_len: usize, cut: &str) {
    eprintln!("warning: prompt truncated to {max_len} tokens; dropped: {cut}");
}

fn generate(model_path: &std::path::Path, device: Option<&str>, args: &GenerateArgs) -> Result<()> {
    check_output(&args.out)?;
    if args.sampling.steps == Some(0) {
        bail!(
            "steps must be between 1 and the model's training timesteps (1000 for Stable Diffusion), got 0"
        );
    }
    let device = model_arg::device(device)?;
    let edits = args.edits.edits()?;
    let mut model = DiffusionModel::load(model_path, &device)?;
    let mut sampling = args.sampling.params(&model);
    let noise = match &args.noise {
        Some(path) => {
            let noise = model_arg::read_noise(path, &model)?;
            for (what, given, implied) in [
                ("width", args.sampling.width, noise.width),
                ("height", args.sampling.height, noise.height),
            ] {
                if given.is_some_and(|g| g != implied) {
                    bail!(
                        "--{what} {} differs from the {implied} that the noise in {} implies",
                        given.unwrap_or_default(),
                        path.display()
                    );
                }
            }
            (sampling.width, sampling.height) = (noise.width, noise.height);
            Some(noise)
        }
        None => None,
    };
    let mut recipe = Recipe {
        noise_hash: noise.as_ref().map(|n| n.hash.clone()),
        edits,
        ..Recipe::for_prompt(model.id.clone(), args.prompt.clone(), args.seed, sampling)
    };
    make_picture(&mut model, &mut recipe, noise.map(|n| n.latent), &args.out)?;
    if args.recipe_json {
        let path = args.out.with_extension("json");
        std::fs::write(&path, recipe.to_json() + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(out = %args.out.display(), "picture written");
    Ok(())
}

fn replay(model_path: &std::path::Path, device: Option<&str>, args: &ReplayArgs) -> Result<()> {
    check_output(&args.out)?;
    let is_png = args
        .recipe
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let json = if is_png {
        recipe::read_png_json(&args.recipe)?
    } else {
        std::fs::read_to_string(&args.recipe)
            .with_context(|| format!("cannot read {}", args.recipe.display()))?
    };
    let json = match (&args.tile, MosaicRecord::is_mosaic_json(&json)) {
        (Some(which), true) => {
            let record = MosaicRecord::from_json(&json)
                .with_context(|| format!("in {}", args.recipe.display()))?;
            record.tile(which)?.recipe.to_json()
        }
        (None, true) => bail!(
            "{} is a mosaic; choose a tile with --tile ROW,COLUMN",
            args.recipe.display()
        ),
        (Some(_), false) => bail!("{} is not a mosaic; drop --tile", args.recipe.display()),
        (None, false) => json,
    };
    let mut recipe =
        Recipe::from_json(&json).with_context(|| format!("in {}", args.recipe.display()))?;
    let mut model = DiffusionModel::load(model_path, &model_arg::device(device)?)?;
    if model.id.weights_hash != recipe.model.weights_hash {
        bail!(
            "the recipe was made with model {} ({}), but {} ({}) is loaded; pass --model",
            recipe.model.name,
            recipe.model.weights_hash,
            model.id.name,
            model.id.weights_hash
        );
    }
    let initial = match (&recipe.noise_hash, &args.noise) {
        (None, None) => None,
        (None, Some(path)) => bail!(
            "the recipe starts from seeded noise; --noise {} would make another picture",
            path.display()
        ),
        (Some(hash), None) => bail!(
            "the recipe starts from a latent in a .npy file (values hash {hash}); pass it with \
             --noise FILE"
        ),
        (Some(hash), Some(path)) => {
            let noise = model_arg::read_noise(path, &model)?;
            if &noise.hash != hash {
                bail!(
                    "noise {} has values hash {}, the recipe was made from {hash}",
                    path.display(),
                    noise.hash
                );
            }
            Some(noise.latent)
        }
    };
    make_picture(&mut model, &mut recipe, initial, &args.out)
}
