//! `interconcept bench`: how fast this machine makes pictures with a model.
//!
//! Speed targets live here, not in tests: timings depend on the machine and on what else runs.
//! Reports medians of several runs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Args;

use crate::engine::model::{Component, DiffusionModel};
use crate::engine::pipeline::{self, SamplingParams};
use crate::engine::scheduler::SamplerKind;
use crate::engine::space::{ConceptPoint, PlaneDirections, Resolver, default_batch_size};
use crate::engine::surgery::{WeightEdit, apply_edits, catalog};
use crate::navigator::{self, PlaneKind, PlaneSpec, TileCache, render_recipes};
use crate::recipe::Recipe;
use crate::worker::{Event, GenerateJob, Job, Worker};

/// `interconcept bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Denoising steps per picture.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Pictures in the batch measurement.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Guidance scale.
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f64,
    /// Time one part of the model alone and print one JSON line (for side-by-side comparisons
    /// with other implementations; run each part in its own process so the peak memory it
    /// reports is that part's).
    #[arg(long, value_enum)]
    pub part: Option<Part>,
    /// Picture side in pixels for `--part` (the model's default when absent).
    #[arg(long)]
    pub size: Option<usize>,
}

/// A part of the model that `bench --part` times alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// One UNet evaluation on a guided batch of two (one denoising step).
    Unet,
    /// One VAE decode of one picture (tiled where the pipeline tiles).
    Vae,
    /// One text encoding of one prompt.
    Text,
    /// Mixing 2% noise into every UNet weight, then undoing it.
    Mix,
    /// Knocking out one UNet module (the first `resnets.0.conv1`), then undoing it.
    Knockout,
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

fn batch_run(model: &DiffusionModel, n: usize, params: &SamplingParams) -> Result<Duration> {
    let seeds: Vec<u64> = (0..n as u64).collect();
    let started = Instant::now();
    let (cond, _) = model.encode_prompts(&["a sneaker"])?;
    let cond = cond.repeat((n, 1, 1))?;
    let initial = pipeline::initial_noise_batch(model, &seeds, params)?;
    pipeline::generate(model, &cond, &initial, &seeds, params, &mut |_| true)?;
    Ok(started.elapsed())
}

/// A 9x9 plane grid as `interconcept plane` makes it: layout, conditioning, batched rendering,
/// with an empty cache.
fn plane_grid_run(model: &mut DiffusionModel, params: &SamplingParams) -> Result<Duration> {
    let started = Instant::now();
    let template = Recipe::for_prompt(model.id.clone(), "a sneaker", 0, params.clone());
    let spec = PlaneSpec {
        centre: ConceptPoint::Prompt("a sneaker".into()),
        kind: PlaneKind::Concept(PlaneDirections::Random { seed: 1 }),
        grid: 9,
        span: 1.0,
    };
    let recipes: Vec<Recipe> = navigator::plane_layout(&template, &spec)?
        .tiles
        .into_iter()
        .map(|t| t.recipe)
        .collect();
    render_recipes(
        model,
        &mut Vec::new(),
        &mut Resolver::new(),
        &mut TileCache::default(),
        &recipes,
        default_batch_size(model, params),
        &mut |_, _| true,
    )?;
    Ok(started.elapsed())
}

/// Peak resident memory of this process so far, in MiB (Linux; `None` elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `bench --part`: loads the model, runs the part once to warm up, times `runs` more, and
/// prints `{"part", "size", "ms" (median), "runs", "peak_rss_mib"}` as one JSON line.
fn run_part(model_dir: &Path, args: &BenchArgs, part: Part) -> Result<()> {
    use candle_core::DType;
    let mut model = DiffusionModel::load(model_dir, &Device::Cpu)?;
    if matches!(part, Part::Mix | Part::Knockout) {
        return time_edit(&mut model, args, part);
    }
    let size = args.size.unwrap_or(model.default_size);
    anyhow::ensure!(
        size > 0 && size.is_multiple_of(model.vae_downscale * model.size_multiple),
        "--size must be a positive multiple of {}",
        model.vae_downscale * model.size_multiple
    );
    let side = size / model.vae_downscale;
    let latents =
        crate::engine::noise::gaussian(1, (1, model.latent_channels, side, side), &model.device)?;
    let prompt = "a photograph of an astronaut riding a horse";
    let (conditioning, _) = model.encode_prompts(&[prompt])?;
    let (empty, _) = model.encode_prompts(&[""])?;
    let timestep = 500.0;
    // The pipeline's own choice of UNet, prepared once as a run prepares it.
    let unet = (part == Part::Unet)
        .then(|| pipeline::GuidedUNet::for_run(&model, &conditioning, Some(&empty), (side, side)))
        .transpose()?;
    let once = || -> Result<()> {
        match part {
            Part::Unet => {
                let unet = unet.as_ref().context("the UNet was not prepared")?;
                let out = unet.predict(&latents, timestep, 7.5)?;
                out.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
            }
            Part::Vae => {
                pipeline::decode(&model, &latents)?;
            }
            Part::Text | Part::Mix | Part::Knockout => {
                model.encode_prompts(&[prompt])?;
            }
        }
        Ok(())
    };
    once()?;
    let mut times = Vec::new();
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        once()?;
        times.push(started.elapsed());
    }
    let line = serde_json::json!({
        "implementation": "interconcept",
        "part": format!("{part:?}").to_lowercase(),
        "size": size,
        "ms": median(times).as_secs_f64() * 1e3,
        "runs": args.runs.max(1),
        "peak_rss_mib": peak_rss_mib(),
        "unet": unet.as_ref().map(|u| if u.is_own() { "own" } else { "candle" }),
    });
    println!("{line}");
    Ok(())
}

/// `bench --part mix|knockout`: an edit of the UNet made on the loaded weights (which keeps a
/// copy of every tensor it touches), the edit changed (a slider moved: 2% to 3% noise, or
/// knockout to a scale of one half), and the undo, timed apart.
fn time_edit(model: &mut DiffusionModel, args: &BenchArgs, part: Part) -> Result<()> {
    let (edits, changed) = match part {
        Part::Mix => {
            let mix = |percent| {
                vec![WeightEdit::MixNoise {
                    percent,
                    seed: 1,
                    components: vec![Component::Unet],
                }]
            };
            (mix(2.0), mix(3.0))
        }
        _ => {
            let module = sample_module(model)?.name;
            (
                vec![WeightEdit::Knockout {
                    component: Component::Unet,
                    module: module.clone(),
                }],
                vec![WeightEdit::Scale {
                    component: Component::Unet,
                    module,
                    factor: 0.5,
                }],
            )
        }
    };
    let (mut apply, mut change, mut undo) = (Vec::new(), Vec::new(), Vec::new());
    let mut values = 0;
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        values = apply_edits(model, &edits)?.values_written;
        apply.push(started.elapsed());
        let started = Instant::now();
        apply_edits(model, &changed)?;
        change.push(started.elapsed());
        let started = Instant::now();
        apply_edits(model, &[])?;
        undo.push(started.elapsed());
    }
    let line = serde_json::json!({
        "implementation": "interconcept",
        "part": format!("{part:?}").to_lowercase(),
        "values": values,
        "apply_ms": median(apply).as_secs_f64() * 1e3,
        "change_ms": median(change).as_secs_f64() * 1e3,
        "undo_ms": median(undo).as_secs_f64() * 1e3,
        "runs": args.runs.max(1),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
    Ok(())
}

/// Runs the benchmark and prints one line per measurement.
pub fn run(model_dir: &Path, args: &BenchArgs) -> Result<()> {
    if let Some(part) = args.part {
        return run_part(model_dir, args, part);
    }
    let runs = args.runs.max(1);
    let started = Instant::now();
    let mut model = DiffusionModel::load(model_dir, &Device::Cpu)?;
    println!(
        "model {} loaded in {:.0} ms",
        model.id.name,
        started.elapsed().as_secs_f64() * 1e3
    );
    let params = SamplingParams {
        num_steps: args.steps,
        guidance_scale: args.guidance,
        sampler: SamplerKind::Ddim,
        width: model.default_size,
        height: model.default_size,
    };

    // Warm up once, then time.
    batch_run(&model, 1, &params)?;
    let single = median(
        (0..runs)
            .map(|_| batch_run(&model, 1, &params))
            .collect::<Result<_>>()?,
    );
    println!(
        "one {}-step picture ({}x{}, guidance {}): {:.1} ms (median of {runs})",
        args.steps,
        params.width,
        params.height,
        args.guidance,
        single.as_secs_f64() * 1e3
    );
    surgery(&mut model, single, runs)?;
    let batch = median(
        (0..runs.min(3))
            .map(|_| batch_run(&model, args.batch, &params))
            .collect::<Result<_>>()?,
    );
    println!(
        "a batch of {} pictures: {:.0} ms ({:.1} ms per picture)",
        args.batch,
        batch.as_secs_f64() * 1e3,
        batch.as_secs_f64() * 1e3 / args.batch as f64
    );

    let grid = median(
        (0..runs.min(3))
            .map(|_| plane_grid_run(&mut model, &params))
            .collect::<Result<_>>()?,
    );
    println!(
        "a 9x9 plane grid (81 pictures; target under 4 s on 2 cores): {:.0} ms",
        grid.as_secs_f64() * 1e3
    );

    // First preview through the worker, model already loaded.
    let mut worker = Worker::spawn(model_dir.to_path_buf(), Device::Cpu, Box::new(|| {}));
    let mut latencies = Vec::new();
    for run in 0..=runs {
        let job = Job::Generate(GenerateJob::prompt("a sneaker", run as u64, params.clone()));
        let sent = Instant::now();
        let id = worker.submit(job).map_err(anyhow::Error::msg)?;
        let mut first_preview = None;
        loop {
            match worker
                .recv_timeout(Duration::from_secs(120))
                .context("worker went silent")?
            {
                Event::Preview { id: got, .. } if got == id && first_preview.is_none() => {
                    first_preview = Some(sent.elapsed());
                }
                Event::Finished { id: got, .. } if got == id => break,
                Event::Failed { error, .. } => anyhow::bail!(error),
                _ => {}
            }
        }
        // The first run includes loading the model into the worker.
        if run > 0 {
            latencies.extend(first_preview);
        }
    }
    println!(
        "first preview of a new job: {:.1} ms after submission (median of {runs})",
        median(latencies).as_secs_f64() * 1e3
    );
    Ok(())
}

/// The UNet module the knockout timings edit: the first `resnets.0.conv1`, a typical size.
fn sample_module(model: &DiffusionModel) -> Result<crate::engine::surgery::ModuleInfo> {
    let modules = catalog(model, Component::Unet);
    modules
        .modules
        .iter()
        .find(|m| m.name.ends_with("resnets.0.conv1"))
        .or(modules.modules.first())
        .cloned()
        .context("the UNet has no modules")
}

/// Times weight surgery against one picture: a one-module knockout and its undo (the cost of
/// each tile of a sweep), and mixing noise into every weight of every component.
fn surgery(model: &mut DiffusionModel, single: Duration, runs: usize) -> Result<()> {
    let module = sample_module(model)?;
    let knockout = [WeightEdit::Knockout {
        component: Component::Unet,
        module: module.name.clone(),
    }];
    let mut times = Vec::new();
    for _ in 0..=runs {
        let started = Instant::now();
        apply_edits(model, &knockout)?;
        apply_edits(model, &[])?;
        times.push(started.elapsed());
    }
    let one = median(times);
    println!(
        "knock out {} ({} values) and undo: {:.3} ms, {:.2}% of one picture",
        module.name,
        module.num_params(),
        one.as_secs_f64() * 1e3,
        100.0 * one.as_secs_f64() / single.as_secs_f64()
    );

    let noise = [WeightEdit::MixNoise {
        percent: 2.0,
        seed: 1,
        components: Component::ALL.to_vec(),
    }];
    let mut times = Vec::new();
    let mut values = 0;
    for _ in 0..runs.min(3) {
        let started = Instant::now();
        values = apply_edits(model, &noise)?.values_written;
        times.push(started.elapsed());
        apply_edits(model, &[])?;
    }
    let mix = median(times);
    println!(
        "mix 2% noise into all {values} weights: {:.1} ms ({:.0} million values/s)",
        mix.as_secs_f64() * 1e3,
        values as f64 / mix.as_secs_f64() / 1e6
    );
    Ok(())
}
