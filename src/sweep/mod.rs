//! `interconcept sweep`: one picture per module with that module knocked out (or randomized,
//! or scaled), or one per strength of a global edit (progressive knockout, noise, scale), all
//! from the same prompt and seed, so the tiles show what each damaged mind imagines.
//!
//! Every tile is a PNG with its recipe inside, in an output folder, named by its index and
//! label; `sweep.json` there lists them. A sweep that is run again skips the tiles whose file
//! already holds the same recipe, so an interrupted sweep of Stable Diffusion's 391 modules
//! resumes where it stopped. The tiles are also put together into one labelled mosaic whose
//! record holds every tile's recipe, so `interconcept replay sweep.png --tile ROW,COLUMN` makes
//! any tile again. With `--shard K/N` a run makes only its share of the tiles (and the layout
//! file of [`crate::shard`]); `interconcept merge` then writes the mosaic.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cli::{SamplingArgs, check_output, render};
use crate::cli_navigator::parse_label_place;
use crate::engine::model::{Component, DiffusionModel};
use crate::engine::surgery::{WeightEdit, apply_edits, catalog};
use crate::mosaic::{self, LabelPlace, Mosaic, MosaicStyle, MosaicTile};
use crate::recipe::{self, Recipe};
use crate::shard::{Shard, ShardLayout, ShardReport, ShardTile, existing_tile};
use crate::surgery_cli::parse_component;

mod layout;

pub use layout::{file_safe, parse_values, short_module_label};

/// Which edit a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SweepEdit {
    /// Knock out each module in turn.
    Knockout,
    /// Randomize each module in turn.
    Randomize,
    /// Scale each module in turn by --factor.
    Scale,
    /// Knock out the first N modules of a random order, for each N in --values.
    Progressive,
    /// Mix each percentage in --values of noise into every weight.
    MixNoise,
    /// Scale every weight by each factor in --values.
    ScaleAll,
}

/// What changes from tile to tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SweepEach {
    /// One tile per module (knockout, randomize, scale).
    Module,
    /// One tile per value of --values (progressive, mix-noise, scale-all).
    Value,
}

/// `interconcept sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The edit to sweep.
    #[arg(long, value_enum)]
    pub edit: SweepEdit,
    /// What each tile varies; follows from --edit when absent.
    #[arg(long, value_enum)]
    pub each: Option<SweepEach>,
    /// The component whose modules are edited: unet, text_encoder or vae.
    #[arg(long, default_value = "unet", value_parser = parse_component)]
    pub component: Component,
    /// Only modules whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Values of a global edit: `0,1,2,5` or `START:END:STEP` (both ends included).
    #[arg(long)]
    pub values: Option<String>,
    /// Factor of --edit scale.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Seed of the randomness in the edit (randomize, mix-noise, progressive order).
    #[arg(long, default_value_t = 0)]
    pub edit_seed: u64,
    /// The prompt.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Seed of the initial noise, the same in every tile.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The mosaic of all tiles, labelled (PNG, with every tile's recipe inside); with --shard,
    /// `interconcept merge` writes it instead.
    #[arg(long, required_unless_present = "shard", conflicts_with = "shard")]
    pub out: Option<PathBuf>,
    /// Draw each picture pixel as ZOOM x ZOOM pixels (1 to 16); by default small pictures are
    /// enlarged to about 128 pixels so that their labels fit.
    #[arg(long)]
    pub zoom: Option<usize>,
    /// Pixels between tiles.
    #[arg(long, default_value_t = 2)]
    pub gap: usize,
    /// Tile labels: under, over or none.
    #[arg(long, default_value = "under", value_parser = parse_label_place)]
    pub labels: LabelPlace,
    /// Folder of the tiles; `<out without .png>-tiles` when absent.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Make only shard K of N: the tiles i (from 0, in mosaic order) with i % N == K - 1, into
    /// --out-dir (needed); `interconcept merge DIR --out sweep.png` then writes the mosaic.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
}

/// One tile to make.
#[derive(Debug, Clone, Serialize)]
struct Tile {
    /// What the tile shows (a module name, or `noise 2%`).
    label: String,
    /// Its file name in the tile folder.
    file: String,
    /// Its label in the mosaic, short enough for a small tile.
    #[serde(skip)]
    short: String,
    /// Its edits.
    #[serde(skip)]
    edits: Vec<WeightEdit>,
}

/// `sweep.json`: the tiles in mosaic order (row by row), with their full labels.
#[derive(Serialize)]
struct Manifest<'a> {
    sweep: &'static str,
    prompt: &'a str,
    seed: u64,
    columns: usize,
    tiles: &'a [Tile],
}

/// The tiles of a sweep, the unedited picture first when tiles are per module.
fn tiles(model: &DiffusionModel, args: &SweepArgs) -> Result<Vec<Tile>> {
    let per_module = matches!(
        args.edit,
        SweepEdit::Knockout | SweepEdit::Randomize | SweepEdit::Scale
    );
    let each = args.each.unwrap_or(if per_module {
        SweepEach::Module
    } else {
        SweepEach::Value
    });
    if per_module != (each == SweepEach::Module) {
        bail!(
            "--edit {} sweeps over {}, not --each {}",
            edit_name(args.edit),
            if per_module { "modules" } else { "values" },
            if each == SweepEach::Module {
                "module"
            } else {
                "value"
            }
        );
    }
    let component = args.component;
    let catalog = catalog(model, component);
    let mut labelled: Vec<(String, String, Vec<WeightEdit>)> = Vec::new();
    if per_module {
        labelled.push(("original".into(), "original".into(), Vec::new()));
        let modules = catalog
            .modules
            .iter()
            .filter(|m| args.filter.as_ref().is_none_or(|f| m.name.contains(f)));
        for m in modules {
            let module = m.name.clone();
            let edit = match args.edit {
                SweepEdit::Randomize => WeightEdit::Randomize {
                    component,
                    module,
                    seed: args.edit_seed,
                },
                SweepEdit::Scale => WeightEdit::Scale {
                    component,
                    module,
                    factor: args.factor,
                },
                _ => WeightEdit::Knockout { component, module },
            };
            labelled.push((m.name.clone(), short_module_label(&m.name), vec![edit]));
        }
    } else {
        let default_values = match args.edit {
            SweepEdit::Progressive => {
                let n = catalog.modules.len();
                format!("0:{n}:{}", n.div_ceil(15).max(1))
            }
            SweepEdit::MixNoise => "0:15:1".into(),
            _ => "1:0:-0.0625".into(),
        };
        for value in parse_values(args.values.as_deref().unwrap_or(&default_values))? {
            let components = vec![component];
            let edit = match args.edit {
                SweepEdit::Progressive => {
                    if value < 0.0 || value.fract() != 0.0 {
                        bail!("--values: a progressive knockout count must be a whole number");
                    }
                    WeightEdit::ProgressiveKnockout {
                        count: value as usize,
                        seed: args.edit_seed,
                        component,
                    }
                }
                SweepEdit::MixNoise => WeightEdit::MixNoise {
                    percent: value,
                    seed: args.edit_seed,
                    components,
                },
                _ => WeightEdit::ScaleAll {
                    factor: value,
                    components,
                },
            };
            edit.validate()?;
            let short = match args.edit {
                SweepEdit::Progressive => format!("{value} out"),
                SweepEdit::MixNoise => format!("{value}%"),
                _ => format!("{}%", value * 100.0),
            };
            labelled.push((edit.label(), short, vec![edit]));
        }
    }
    Ok(labelled
        .into_iter()
        .enumerate()
        .map(|(i, (label, short, edits))| Tile {
            file: format!("{i:04}-{}.png", file_safe(&label)),
            label,
            short,
            edits,
        })
        .collect())
}

/// The mosaic's look: a small picture is enlarged so that its label fits under it.
fn style(args: &SweepArgs, side: usize) -> Result<MosaicStyle> {
    let zoom = args.zoom.unwrap_or((128 / side.max(1)).clamp(1, 8));
    if zoom == 0 || zoom > 16 {
        bail!("--zoom must be between 1 and 16, got {zoom}");
    }
    Ok(MosaicStyle {
        gap: args.gap,
        zoom,
        labels: args.labels,
    })
}

/// Runs `interconcept sweep`.
pub fn run(model_path: &Path, device: &Device, args: &SweepArgs) -> Result<()> {
    if let Some(out) = &args.out {
        check_output(out)?;
    }
    if args.shard.is_some() && args.out_dir.is_none() {
        bail!("--shard needs --out-dir DIR, the folder the shards share");
    }
    let out_dir = match (&args.out_dir, &args.out) {
        (Some(dir), _) => dir.clone(),
        (None, Some(out)) => {
            let stem = out
                .file_stem()
                .map_or_else(|| "sweep".to_string(), |s| s.to_string_lossy().into_owned());
            out.with_file_name(format!("{stem}-tiles"))
        }
        (None, None) => bail!("--out-dir or --out is needed"),
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut model = DiffusionModel::load(model_path, device)?;
    let sampling = args.sampling.params(&model);
    crate::engine::pipeline::validate(&model, &sampling)?;
    let tiles = tiles(&model, args)?;
    let style = style(args, sampling.width.max(sampling.height))?;
    let columns = sweep_columns(tiles.len());
    let rows = tiles.len().div_ceil(columns);
    mosaic::check_size(columns, rows, sampling.width, sampling.height, &style)?;

    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(tiles.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "[{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let recipes: Vec<Recipe> = tiles
        .iter()
        .map(|tile| Recipe {
            edits: tile.edits.clone(),
            ..Recipe::for_prompt(
                model.id.clone(),
                args.prompt.clone(),
                args.seed,
                sampling.clone(),
            )
        })
        .collect();
    let title = title(args);
    // The tile list with full names beside the tiles.
    let manifest = Manifest {
        sweep: edit_name(args.edit),
        prompt: &args.prompt,
        seed: args.seed,
        columns,
        tiles: &tiles,
    };
    let json = serde_json::to_string_pretty(&manifest).context("cannot describe the sweep")?;
    let manifest_path = out_dir.join("sweep.json");
    std::fs::write(&manifest_path, json + "\n")
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;

    // A shard writes the layout and its own tiles; `merge` makes the mosaic.
    if let Some(shard) = args.shard {
        let mut layout = ShardLayout::new(title, columns, &style);
        layout.tiles = tiles
            .iter()
            .zip(&recipes)
            .map(|(tile, recipe)| ShardTile {
                file: tile.file.clone(),
                label: tile.short.clone(),
                recipe: recipe.clone(),
            })
            .collect();
        layout.write_into(&out_dir)?;
        let mut report = ShardReport::default();
        for (index, (tile, recipe)) in tiles.iter().zip(&recipes).enumerate() {
            if !shard.owns(index) {
                continue;
            }
            report.owned += 1;
            let path = out_dir.join(&tile.file);
            if existing_tile(&path, recipe).is_some() {
                continue;
            }
            bar.set_message(tile.label.clone());
            let mut recipe = recipe.clone();
            let picture = render(&mut model, &mut recipe, None)?;
            recipe::write_png(&path, &picture, &recipe.to_json())?;
            report.made += 1;
            report.broken += usize::from(picture.non_finite);
            bar.inc(1);
        }
        bar.finish_and_clear();
        apply_edits(&mut model, &[])?;
        println!("{}", report.line(shard, tiles.len(), &out_dir));
        return Ok(());
    }
    let Some(out) = &args.out else {
        bail!("--out is needed without --shard");
    };

    let (mut mosaic_tiles, mut made, mut broken) = (Vec::with_capacity(tiles.len()), 0, 0);
    for (tile, recipe) in tiles.iter().zip(recipes) {
        bar.set_message(tile.label.clone());
        let path = out_dir.join(&tile.file);
        let mut recipe = recipe;
        let picture = match existing_tile(&path, &recipe).map(|(picture, _)| picture) {
            Some(picture) => picture,
            None => {
                let picture = render(&mut model, &mut recipe, None)?;
                recipe::write_png(&path, &picture, &recipe.to_json())?;
                made += 1;
                picture
            }
        };
        recipe.non_finite = picture.non_finite;
        broken += usize::from(picture.non_finite);
        mosaic_tiles.push(MosaicTile {
            picture,
            label: tile.short.clone(),
            recipe,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    apply_edits(&mut model, &[])?;

    let mosaic = Mosaic {
        title,
        columns,
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        tiles: mosaic_tiles,
        style,
    };
    mosaic.write(out)?;
    println!(
        "{} tiles ({made} made, {} already there{}) in {}; mosaic {}",
        tiles.len(),
        tiles.len() - made,
        if broken > 0 {
            format!(", {broken} broken by NaN or infinity")
        } else {
            String::new()
        },
        out_dir.display(),
        out.display()
    );
    Ok(())
}

/// The mosaic's title: the edit, the component, the prompt and the seeds.
fn title(args: &SweepArgs) -> String {
    match args.edit {
        SweepEdit::Knockout | SweepEdit::Randomize | SweepEdit::Scale => format!(
            "{} each {} module: \"{}\", seed {}",
            edit_name(args.edit),
            args.component.name(),
            args.prompt,
            args.seed
        ),
        _ => format!(
            "{} ({} weights, edit seed {}): \"{}\", seed {}",
            edit_name(args.edit),
            args.component.name(),
            args.edit_seed,
            args.prompt,
            args.seed
        ),
    }
}

/// The edit's name as on the command line.
fn edit_name(edit: SweepEdit) -> &'static str {
    match edit {
        SweepEdit::Knockout => "knockout",
        SweepEdit::Randomize => "randomize",
        SweepEdit::Scale => "scale",
        SweepEdit::Progressive => "progressive",
        SweepEdit::MixNoise => "mix-noise",
        SweepEdit::ScaleAll => "scale-all",
    }
}

/// Up to this many tiles a sweep is one strip, read left to right like the essay's fading
/// sequences; longer sweeps wrap into a near-square grid.
const MAX_STRIP: usize = 8;

/// Columns of a sweep's mosaic of `tiles` tiles.
fn sweep_columns(tiles: usize) -> usize {
    if tiles <= MAX_STRIP {
        tiles.max(1)
    } else {
        (tiles as f64).sqrt().ceil() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::sweep_columns;

    #[test]
    fn short_sweeps_are_strips_and_long_ones_near_squares() {
        assert_eq!(sweep_columns(0), 1);
        assert_eq!(sweep_columns(3), 3);
        assert_eq!(sweep_columns(8), 8);
        assert_eq!(sweep_columns(9), 3);
        assert_eq!(sweep_columns(391), 20);
    }
}
