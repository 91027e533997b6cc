//! `interconcept plane`, `line` and `sample`: the navigator's grids, written as mosaics.
//!
//! Each command lays out one recipe per tile ([`crate::navigator`]), renders them in batches,
//! and writes one PNG whose text chunk holds every tile's recipe. A tile replays with
//! `interconcept replay MOSAIC.png --tile ROW,COLUMN --out tile.png`, or from the JSON files
//! that `--tile-recipes DIR` writes. With `--shard K/N --out-dir DIR` a command makes only its
//! share of the tiles, as PNGs in DIR beside the layout, for `interconcept merge` (see
//! [`crate::shard`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::Args;

use crate::cli::{SamplingArgs, check_output};
use crate::engine::model::DiffusionModel;
use crate::engine::pipeline;
use crate::engine::space::{ConceptPoint, Plane, PlaneDirections, Resolver, default_batch_size};
use crate::mosaic::{self, LabelPlace, Mosaic, MosaicStyle, MosaicTile};
use crate::navigator::{
    self, Layout, LineSpec, PlaneKind, PlaneSpec, SampleSpec, TileCache, describe, format_value,
    render_recipes,
};
use crate::recipe::{self, Recipe};
use crate::shard::{Shard, ShardArgs, ShardLayout, ShardReport, ShardTile, existing_tile};
use crate::train::fashion_mnist::{Colour, NUM_CLASSES, caption};

/// Options shared by the commands that write mosaics.
#[derive(Debug, Clone, Args)]
pub struct MosaicArgs {
    /// Output PNG: the mosaic, with every tile's recipe inside (with --shard, `interconcept
    /// merge` writes it instead).
    #[arg(long, required_unless_present = "shard", conflicts_with = "shard")]
    pub out: Option<PathBuf>,
    /// Also write each tile's recipe as JSON into this folder (tile-ROW-COLUMN.json), for
    /// `interconcept replay`.
    #[arg(long, value_name = "DIR", conflicts_with = "shard")]
    pub tile_recipes: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shard: ShardArgs,
    /// Pixels between tiles.
    #[arg(long, default_value_t = 2)]
    pub gap: usize,
    /// Draw each picture pixel as ZOOM x ZOOM pixels (1 to 16).
    #[arg(long, default_value_t = 1)]
    pub zoom: usize,
    /// Tile labels: under, over or none.
    #[arg(long, default_value = "under", value_parser = parse_label_place)]
    pub labels: LabelPlace,
    /// Pictures per batch; by default as many as the model's size allows (64 for the
    /// embedded model).
    #[arg(long)]
    pub batch: Option<usize>,
}

/// Parses where tile labels go, for clap.
pub(crate) fn parse_label_place(name: &str) -> Result<LabelPlace, String> {
    match name {
        "under" => Ok(LabelPlace::Under),
        "over" => Ok(LabelPlace::Over),
        "none" => Ok(LabelPlace::None),
        other => Err(format!(
            "unknown label place {other}; choose under, over or none"
        )),
    }
}

/// Where random points get their statistics.
#[derive(Debug, Clone, Args)]
pub struct ReferenceArgs {
    /// A file of reference prompts, one a line, whose embedding statistics random points
    /// follow; by default the embedded model's caption vocabulary (90 captions).
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,
}

impl ReferenceArgs {
    fn prompts(&self) -> Result<Vec<String>> {
        let Some(path) = &self.reference else {
            return Ok(caption_vocabulary());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let prompts: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if prompts.len() < 2 {
            bail!("{} holds fewer than 2 prompts", path.display());
        }
        Ok(prompts)
    }
}

/// Every caption the embedded model was trained on: each class plain and in each colour.
pub fn caption_vocabulary() -> Vec<String> {
    (0..NUM_CLASSES)
        .flat_map(|class| {
            std::iter::once(None)
                .chain(Colour::ALL.into_iter().map(Some))
                .map(move |colour| caption(class, colour))
        })
        .collect()
}

/// `interconcept plane`.
#[derive(Debug, Args)]
pub struct PlaneArgs {
    /// The prompt at the middle of the plane.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Put the middle at the random point of this seed instead of a prompt.
    #[arg(long, value_name = "SEED", conflicts_with = "prompt")]
    pub at_random: Option<u64>,
    /// Tiles along each side.
    #[arg(long, default_value_t = 9)]
    pub grid: usize,
    /// u and v run from -SPAN to SPAN.
    #[arg(long, default_value_t = 1.0)]
    pub span: f64,
    /// Seed of the random directions and of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the initial noise, when it should differ from --seed.
    #[arg(long)]
    pub noise_seed: Option<u64>,
    /// Span the plane toward two prompts instead of random directions (give it twice).
    #[arg(long, value_name = "PROMPT")]
    pub toward: Vec<String>,
    /// Vary the initial noise on a random plane instead of the conditioning.
    #[arg(long, conflicts_with = "toward")]
    pub noise_plane: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub reference: ReferenceArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mosaic: MosaicArgs,
}

/// `interconcept line`.
#[derive(Debug, Args)]
pub struct LineArgs {
    /// The prompt at t = 0.
    #[arg(long)]
    pub from: String,
    /// The prompt at t = 1.
    #[arg(long)]
    pub to: String,
    /// Tiles along the line (--steps is the denoising steps).
    #[arg(long, default_value_t = 9)]
    pub points: usize,
    /// Go this far past each end: t runs from -BEYOND to 1 + BEYOND.
    #[arg(long, default_value_t = 0.0)]
    pub beyond: f64,
    /// Interpolate along the great circle instead of the straight line.
    #[arg(long)]
    pub slerp: bool,
    /// Seed of the initial noise, the same for every tile.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tiles per row.
    #[arg(long)]
    pub columns: Option<usize>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mosaic: MosaicArgs,
}

/// `interconcept sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Random points to draw.
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Seed of the first point; the others follow (each seed draws a point and its noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tiles per row.
    #[arg(long)]
    pub columns: Option<usize>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub reference: ReferenceArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mosaic: MosaicArgs,
}

/// Checks the options every grid shares, before the model loads.
fn check_common(sampling: &SamplingArgs, mosaic: &MosaicArgs) -> Result<()> {
    if let Some(out) = &mosaic.out {
        check_output(out)?;
    }
    mosaic.shard.sharded()?;
    if sampling.steps == Some(0) {
        bail!(
            "steps must be between 1 and the model's training timesteps (1000 for Stable Diffusion), got 0"
        );
    }
    if mosaic.zoom == 0 || mosaic.zoom > 16 {
        bail!("--zoom must be between 1 and 16, got {}", mosaic.zoom);
    }
    if mosaic.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    Ok(())
}

/// Loads the model and makes the template recipe all tiles start from.
fn prepare(
    model_dir: &Path,
    device: &Device,
    sampling: &SamplingArgs,
    seed: u64,
) -> Result<(DiffusionModel, Recipe)> {
    let model = DiffusionModel::load(model_dir, device)?;
    let template = Recipe::for_prompt(model.id.clone(), "", seed, sampling.params(&model));
    pipeline::validate(&model, &template.sampling)?;
    Ok((model, template))
}

/// Renders a layout and writes its mosaic (and tile recipes when asked).
fn write_layout(model: &mut DiffusionModel, layout: Layout, args: &MosaicArgs) -> Result<()> {
    if let Some((shard, dir)) = args.shard.sharded()? {
        return write_shard(model, layout, args, shard, dir);
    }
    let Some(out) = &args.out else {
        bail!("--out is needed without --shard");
    };
    let started = Instant::now();
    let recipes: Vec<Recipe> = layout.tiles.iter().map(|t| t.recipe.clone()).collect();
    let style = style_of(args);
    let sampling = &recipes[0].sampling;
    let rows = recipes.len().div_ceil(layout.columns.max(1));
    mosaic::check_size(
        layout.columns,
        rows,
        sampling.width,
        sampling.height,
        &style,
    )?;
    let batch = args
        .batch
        .unwrap_or_else(|| default_batch_size(model, &recipes[0].sampling));
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(recipes.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let pictures = render_recipes(
        model,
        &mut Vec::new(),
        &mut Resolver::new(),
        &mut TileCache::default(),
        &recipes,
        batch,
        &mut |_, _| {
            bar.inc(1);
            true
        },
    )?;
    bar.finish_and_clear();

    let mut broken = 0;
    let tiles: Vec<MosaicTile> = layout
        .tiles
        .into_iter()
        .zip(pictures)
        .map(|(tile, picture)| {
            broken += usize::from(picture.non_finite);
            MosaicTile {
                recipe: Recipe {
                    non_finite: picture.non_finite,
                    ..tile.recipe
                },
                label: tile.label,
                picture,
            }
        })
        .collect();
    if broken > 0 {
        eprintln!("warning: {broken} tiles came out NaN or infinite and are markers");
    }
    let mosaic = Mosaic {
        title: layout.title,
        columns: layout.columns,
        column_labels: layout.column_labels,
        row_labels: layout.row_labels,
        corner_label: layout.corner_label,
        tiles,
        style,
    };
    let record = mosaic.write(out)?;
    if let Some(dir) = &args.tile_recipes {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for tile in &record.tiles {
            let path = dir.join(format!("tile-{}-{}.json", tile.row, tile.column));
            std::fs::write(&path, tile.recipe.to_json() + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    tracing::info!(
        out = %out.display(),
        tiles = record.tiles.len(),
        batch,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "mosaic written"
    );
    Ok(())
}

/// The look of the mosaic the options ask for.
fn style_of(args: &MosaicArgs) -> MosaicStyle {
    MosaicStyle {
        gap: args.gap,
        zoom: args.zoom,
        labels: args.labels,
    }
}

/// Makes one shard of a layout: writes the layout file, then each owned tile that is not
/// already there as a PNG with its recipe inside.
fn write_shard(
    model: &mut DiffusionModel,
    layout: Layout,
    args: &MosaicArgs,
    shard: Shard,
    dir: &Path,
) -> Result<()> {
    let style = style_of(args);
    let sampling = &layout.tiles[0].recipe.sampling;
    let rows = layout.tiles.len().div_ceil(layout.columns.max(1));
    mosaic::check_size(
        layout.columns,
        rows,
        sampling.width,
        sampling.height,
        &style,
    )?;
    let mut file = ShardLayout::new(layout.title, layout.columns, &style);
    file.column_labels = layout.column_labels;
    file.row_labels = layout.row_labels;
    file.corner_label = layout.corner_label;
    file.tiles = layout
        .tiles
        .into_iter()
        .enumerate()
        .map(|(i, tile)| ShardTile {
            file: format!("tile-{}-{}.png", i / file.columns, i % file.columns),
            label: tile.label,
            recipe: tile.recipe,
        })
        .collect();
    file.write_into(dir)?;

    // The owned tiles an earlier run has not made yet.
    let owned: Vec<&ShardTile> = file
        .tiles
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.owns(*i))
        .map(|(_, t)| t)
        .collect();
    let todo: Vec<&ShardTile> = owned
        .iter()
        .copied()
        .filter(|t| existing_tile(&dir.join(&t.file), &t.recipe).is_none())
        .collect();
    let recipes: Vec<Recipe> = todo.iter().map(|t| t.recipe.clone()).collect();
    let mut report = ShardReport {
        owned: owned.len(),
        ..ShardReport::default()
    };
    if !recipes.is_empty() {
        let batch = args
            .batch
            .unwrap_or_else(|| default_batch_size(model, &recipes[0].sampling));
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(recipes.len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        // Batch by batch, each batch's tiles written before the next is drawn, so a shard that
        // is stopped keeps what it made.
        let (mut applied, mut resolver) = (Vec::new(), Resolver::new());
        for (tiles, recipes) in todo.chunks(batch).zip(recipes.chunks(batch)) {
            let pictures = render_recipes(
                model,
                &mut applied,
                &mut resolver,
                &mut TileCache::default(),
                recipes,
                batch,
                &mut |_, _| {
                    bar.inc(1);
                    true
                },
            )?;
            for (tile, picture) in tiles.iter().zip(pictures) {
                let recipe = Recipe {
                    non_finite: picture.non_finite,
                    ..tile.recipe.clone()
                };
                recipe::write_png(&dir.join(&tile.file), &picture, &recipe.to_json())?;
                report.made += 1;
                report.broken += usize::from(picture.non_finite);
            }
        }
        bar.finish_and_clear();
    }
    println!("{}", report.line(shard, file.tiles.len(), dir));
    Ok(())
}

/// Runs `interconcept plane`.
pub fn plane(model_dir: &Path, device: &Device, args: &PlaneArgs) -> Result<()> {
    check_common(&args.sampling, &args.mosaic)?;
    let centre = match args.at_random {
        Some(seed) => ConceptPoint::Random {
            seed,
            reference_prompts: args.reference.prompts()?,
        },
        None => ConceptPoint::Prompt(args.prompt.clone()),
    };
    let kind = match args.toward.as_slice() {
        _ if args.noise_plane => PlaneKind::Noise {
            directions_seed: args.seed,
        },
        [] => PlaneKind::Concept(PlaneDirections::Random { seed: args.seed }),
        [a, b] => PlaneKind::Concept(PlaneDirections::Toward {
            a: Box::new(ConceptPoint::Prompt(a.clone())),
            b: Box::new(ConceptPoint::Prompt(b.clone())),
        }),
        other => bail!("--toward needs exactly two prompts, got {}", other.len()),
    };
    let spec = PlaneSpec {
        centre,
        kind,
        grid: args.grid,
        span: args.span,
    };
    spec.validate()?;
    let noise_seed = args.noise_seed.unwrap_or(args.seed);
    let (mut model, template) = prepare(model_dir, device, &args.sampling, noise_seed)?;
    let mut layout = navigator::plane_layout(&template, &spec)?;

    // Say where the second prompt lies: the plane passes through it, off the u axis.
    if let PlaneKind::Concept(PlaneDirections::Toward { a, b }) = &spec.kind {
        let mut resolver = Resolver::new();
        let centre = resolver.resolve(&model, &spec.centre)?;
        let (a, b_point) = (resolver.resolve(&model, a)?, resolver.resolve(&model, b)?);
        let (u, v) = Plane::toward(&centre, &a, &b_point)?.coordinates_of(&b_point)?;
        let (u, v) = (format_value(u), format_value(v));
        layout.title += &format!("; {} at ({u}, {v})", describe(b));
    }
    write_layout(&mut model, layout, &args.mosaic)
}

/// Runs `interconcept line`.
pub fn line(model_dir: &Path, device: &Device, args: &LineArgs) -> Result<()> {
    check_common(&args.sampling, &args.mosaic)?;
    let spec = LineSpec {
        from: ConceptPoint::Prompt(args.from.clone()),
        to: ConceptPoint::Prompt(args.to.clone()),
        points: args.points,
        beyond: args.beyond,
        slerp: args.slerp,
        columns: args.columns,
    };
    spec.validate()?;
    let (mut model, template) = prepare(model_dir, device, &args.sampling, args.seed)?;
    let layout = navigator::line_layout(&template, &spec)?;
    write_layout(&mut model, layout, &args.mosaic)
}

/// Runs `interconcept sample`.
pub fn sample(model_dir: &Path, device: &Device, args: &SampleArgs) -> Result<()> {
    check_common(&args.sampling, &args.mosaic)?;
    let spec = SampleSpec {
        count: args.count,
        first_seed: args.seed,
        reference_prompts: args.reference.prompts()?,
        columns: args.columns,
    };
    spec.validate()?;
    let (mut model, template) = prepare(model_dir, device, &args.sampling, args.seed)?;
    let layout = navigator::sample_layout(&template, &spec)?;
    write_layout(&mut model, layout, &args.mosaic)
}
