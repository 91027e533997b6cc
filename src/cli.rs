//! The command line: the same engine as the window, headless, for batch experiments and tests.
//!
//! With no subcommand the explorer window opens on the embedded model. Every error reaches the
//! user as one line on stderr and a non-zero exit; nothing here panics on bad input.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};

use crate::cli_navigator::{LineArgs, PlaneArgs, SampleArgs};
use crate::engine::model::{DiffusionModel, embedded_model_dir};
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

    /// Model folder (diffusers layout) for the window; defaults to the embedded model.
    #[arg(long, global = true)]
    pub model: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make one picture and write it as PNG with its recipe inside.
    Generate(GenerateArgs),
    /// Make a picture again from a recipe (JSON file, or a PNG made by the program).
    Replay(ReplayArgs),
    /// A grid of pictures on a plane through a prompt's point (or through its initial noise).
    Plane(PlaneArgs),
    /// Pictures along the line between two prompts' points, and beyond its ends.
    Line(LineArgs),
    /// Pictures at random points of interconcept space.
    Sample(SampleArgs),
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
}

/// Sampling options shared by the commands that generate.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Denoising steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Classifier-free guidance scale (1 or less turns guidance off).
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f64,
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
    /// The sampling parameters for a model.
    pub fn params(&self, model: &DiffusionModel) -> SamplingParams {
        SamplingParams {
            num_steps: self.steps,
            guidance_scale: self.guidance,
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
}

/// `interconcept tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// The prompt.
    pub prompt: String,
}

/// The model folder a command uses.
pub fn model_dir(cli_model: Option<&PathBuf>) -> PathBuf {
    cli_model.cloned().unwrap_or_else(embedded_model_dir)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let model_dir = model_dir(cli.model.as_ref());
    match cli.command {
        None => crate::gui::run_gui(model_dir),
        Some(Command::Generate(args)) => generate(&model_dir, &args),
        Some(Command::Replay(args)) => replay(&model_dir, &args),
        Some(Command::Plane(args)) => crate::cli_navigator::plane(&model_dir, &args),
        Some(Command::Line(args)) => crate::cli_navigator::line(&model_dir, &args),
        Some(Command::Sample(args)) => crate::cli_navigator::sample(&model_dir, &args),
        Some(Command::Train(args)) => crate::train::cli::train(&args),
        Some(Command::Eval(args)) => crate::train::cli::eval(&model_dir, &args),
        Some(Command::Bench(args)) => crate::bench::run(&model_dir, &args),
        Some(Command::Modules(args)) => crate::surgery_cli::modules(&model_dir, &args),
        Some(Command::Sweep(args)) => crate::sweep::run(&model_dir, &args),
        Some(Command::Tokenize(args)) => {
            let tokenizer =
                crate::engine::tokenizer::ClipTokenizer::from_dir(&model_dir.join("tokenizer"))?;
            let tokens = tokenizer.encode(&args.prompt)?;
            if let Some(cut) = &tokens.truncated {
                eprintln!(
                    "warning: prompt truncated to {} tokens; dropped: {cut}",
                    tokenizer.max_len()
                );
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
/// others), then generates. Records in the recipe whether the model produced NaN or infinity.
pub fn render(model: &mut DiffusionModel, recipe: &mut Recipe) -> Result<Picture> {
    pipeline::validate(model, &recipe.sampling)?;
    crate::engine::surgery::apply_edits(model, &recipe.edits)?;
    let picture = navigator::render_recipe(model, recipe)?;
    recipe.non_finite = picture.non_finite;
    Ok(picture)
}

/// Makes one picture from a recipe and writes it.
pub fn make_picture(
    model: &mut DiffusionModel,
    recipe: &mut Recipe,
    out: &std::path::Path,
) -> Result<()> {
    let picture = render(model, recipe)?;
    if picture.non_finite {
        eprintln!("warning: the model produced NaN or infinity; the picture is a marker");
    }
    recipe::write_png(out, &picture, &recipe.to_json())
}

fn generate(model_dir: &std::path::Path, args: &GenerateArgs) -> Result<()> {
    check_output(&args.out)?;
    if args.sampling.steps == 0 {
        bail!("steps must be at least 1");
    }
    let edits = args.edits.edits()?;
    let mut model = DiffusionModel::load(model_dir, &Device::Cpu)?;
    let mut recipe = Recipe {
        edits,
        ..Recipe::for_prompt(
            model.id.clone(),
            args.prompt.clone(),
            args.seed,
            args.sampling.params(&model),
        )
    };
    make_picture(&mut model, &mut recipe, &args.out)?;
    if args.recipe_json {
        let path = args.out.with_extension("json");
        std::fs::write(&path, recipe.to_json() + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(out = %args.out.display(), "picture written");
    Ok(())
}

fn replay(model_dir: &std::path::Path, args: &ReplayArgs) -> Result<()> {
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
    let mut model = DiffusionModel::load(model_dir, &Device::Cpu)?;
    if model.id.weights_hash != recipe.model.weights_hash {
        bail!(
            "the recipe was made with model {} ({}), but {} ({}) is loaded; pass --model",
            recipe.model.name,
            recipe.model.weights_hash,
            model.id.name,
            model.id.weights_hash
        );
    }
    make_picture(&mut model, &mut recipe, &args.out)
}
