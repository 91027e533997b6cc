//! The interconcept navigator: grids of pictures across planes, along lines and at random
//! points of concept space.
//!
//! A grid is first a [`Layout`]: one full [`Recipe`] per tile (the point in concept space, or
//! in noise space, and everything else that makes the picture), with labels. Rendering a layout
//! goes through [`render_recipes`], in batches and with a cache, and each tile equals what
//! [`render_recipe`] makes of the tile's recipe alone, so any tile of a mosaic replays.

pub mod island;
mod render;

pub use render::{TileCache, hold_edits, render_item, render_recipe, render_recipes};

use anyhow::{Result, bail};

use crate::engine::space::{ConceptPoint, NoisePoint, PlaneDirections};
use crate::recipe::Recipe;

/// The largest side of a plane grid.
pub const MAX_GRID: usize = 64;

/// The most tiles in a line or a sample.
pub const MAX_TILES: usize = MAX_GRID * MAX_GRID;

/// A grid of recipes with its labels, ready to render into a mosaic.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One line that says what the grid shows.
    pub title: String,
    /// Tiles per row; tiles fill rows left to right, top to bottom.
    pub columns: usize,
    /// A label above each column (axis values), or none.
    pub column_labels: Vec<String>,
    /// A label left of each row (axis values), or none.
    pub row_labels: Vec<String>,
    /// The label where the row and column labels meet (the axes' names).
    pub corner_label: String,
    /// The tiles, row-major.
    pub tiles: Vec<LayoutTile>,
}

/// One tile of a layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutTile {
    /// Everything that makes the tile's picture.
    pub recipe: Recipe,
    /// A short label drawn with the tile; may be empty.
    pub label: String,
}

/// What a plane varies.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaneKind {
    /// The conditioning, on a plane through the centre; the initial noise stays that of the
    /// template's seed.
    Concept(PlaneDirections),
    /// The initial noise, on a random plane through the noise of the template's seed; the
    /// conditioning stays the centre's.
    Noise {
        /// Seed of the plane's directions.
        directions_seed: u64,
    },
}

/// A plane grid: `grid` x `grid` tiles, u and v from -span to +span.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneSpec {
    /// The point at the middle.
    pub centre: ConceptPoint,
    /// What is varied, and how.
    pub kind: PlaneKind,
    /// Tiles along each side.
    pub grid: usize,
    /// The largest |u| and |v|.
    pub span: f64,
}

impl PlaneSpec {
    /// Checks the numbers, before any model is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.grid == 0 || self.grid > MAX_GRID {
            bail!("--grid must be between 1 and {MAX_GRID}, got {}", self.grid);
        }
        check_span("--span", self.span)
    }
}

/// A line: `points` tiles from t = -beyond to t = 1 + beyond.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSpec {
    /// The point at t = 0.
    pub from: ConceptPoint,
    /// The point at t = 1.
    pub to: ConceptPoint,
    /// Tiles along the line (at least 2).
    pub points: usize,
    /// How far to go past each end, in units of the line's length.
    pub beyond: f64,
    /// Along the great circle rather than the straight line.
    pub slerp: bool,
    /// Tiles per row; `None` puts up to 16 in one row.
    pub columns: Option<usize>,
}

impl LineSpec {
    /// Checks the numbers, before any model is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.points < 2 || self.points > MAX_TILES {
            bail!(
                "--points must be between 2 and {MAX_TILES}, got {}",
                self.points
            );
        }
        check_columns(self.columns, self.points, 1)?;
        check_span("--beyond", self.beyond)
    }
}

/// Random points: `count` tiles with seeds `first_seed`, `first_seed + 1`, ...; each seed draws
/// both the point and the initial noise, so a tile is reproducible from its seed alone.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSpec {
    /// Tiles.
    pub count: usize,
    /// Seed of the first tile.
    pub first_seed: u64,
    /// The prompts whose embedding statistics random points follow.
    pub reference_prompts: Vec<String>,
    /// Tiles per row; `None` makes the grid about square.
    pub columns: Option<usize>,
}

impl SampleSpec {
    /// Checks the numbers, before any model is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 || self.count > MAX_TILES {
            bail!(
                "--count must be between 1 and {MAX_TILES}, got {}",
                self.count
            );
        }
        check_columns(self.columns, self.count, 1)?;
        if self.reference_prompts.len() < 2 {
            bail!("random points need at least 2 reference prompts");
        }
        Ok(())
    }
}

/// `n` evenly spaced values from `-span` to `span`, symmetric, with exactly 0 in the middle
/// when `n` is odd; `[0]` when `n` is 1.
pub fn axis(n: usize, span: f64) -> Vec<f64> {
    if n <= 1 {
        return vec![0.0; n];
    }
    let half = (n - 1) as f64;
    (0..n)
        .map(|i| span * (2.0 * i as f64 - half) / half)
        .collect()
}

/// A coordinate for a label: at most two decimals, no trailing zeros, no "-0".
pub fn format_value(x: f64) -> String {
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "-0" | "" => "0".to_string(),
        other => other.to_string(),
    }
}

/// A point described in a few words, for titles.
pub fn describe(point: &ConceptPoint) -> String {
    match point {
        ConceptPoint::Prompt(text) => format!("{text:?}"),
        ConceptPoint::Random { seed, .. } => format!("random point {seed}"),
        ConceptPoint::Line { from, to, t, .. } => format!(
            "t={} from {} to {}",
            format_value(*t),
            describe(from),
            describe(to)
        ),
        ConceptPoint::Plane { centre, u, v, .. } => format!(
            "({}, {}) around {}",
            format_value(*u),
            format_value(*v),
            describe(centre)
        ),
    }
}

/// A point of initial-noise space described in a few words, for titles and tile windows.
pub fn describe_noise(point: &NoisePoint) -> String {
    match point {
        NoisePoint::Plane {
            centre_seed,
            directions_seed,
            u,
            v,
        } => format!(
            "noise ({}, {}) around seed {centre_seed}, directions {directions_seed}",
            format_value(*u),
            format_value(*v)
        ),
        NoisePoint::Line {
            from_seed,
            to_seed,
            t,
            slerp,
        } => format!(
            "noise t={} on the {} from seed {from_seed} to seed {to_seed}",
            format_value(*t),
            if *slerp { "great circle" } else { "line" }
        ),
    }
}

/// The template with its conditioning at `point`: a prompt stays a plain prompt recipe.
fn at_point(template: &Recipe, point: ConceptPoint) -> Recipe {
    let mut recipe = template.clone();
    recipe.non_finite = false;
    match point {
        ConceptPoint::Prompt(text) => {
            recipe.prompt = text;
            recipe.point = None;
        }
        point => {
            recipe.prompt = point.anchor_prompt().to_string();
            recipe.point = Some(Box::new(point));
        }
    }
    recipe
}

fn check_span(what: &str, x: f64) -> Result<()> {
    if !(0.0..=1e6).contains(&x) {
        bail!("{what} must be a number between 0 and 1e6, got {x}");
    }
    Ok(())
}

/// The tiles of a plane, rows from v = +span at the top to -span at the bottom, columns from
/// u = -span on the left to +span on the right.
pub fn plane_layout(template: &Recipe, spec: &PlaneSpec) -> Result<Layout> {
    spec.validate()?;
    let values = axis(spec.grid, spec.span);
    let mut tiles = Vec::with_capacity(spec.grid * spec.grid);
    for &v in values.iter().rev() {
        for &u in &values {
            let recipe = match &spec.kind {
                PlaneKind::Concept(directions) => at_point(
                    template,
                    ConceptPoint::Plane {
                        centre: Box::new(spec.centre.clone()),
                        directions: directions.clone(),
                        u,
                        v,
                    },
                ),
                PlaneKind::Noise { directions_seed } => Recipe {
                    noise: Some(Box::new(NoisePoint::Plane {
                        centre_seed: template.seed,
                        directions_seed: *directions_seed,
                        u,
                        v,
                    })),
                    ..at_point(template, spec.centre.clone())
                },
            };
            tiles.push(LayoutTile {
                recipe,
                label: String::new(),
            });
        }
    }
    let centre = describe(&spec.centre);
    let title = match &spec.kind {
        PlaneKind::Concept(PlaneDirections::Random { seed }) => format!(
            "plane through {centre}, random directions {seed}; units of |centre|; noise seed {}",
            template.seed
        ),
        PlaneKind::Concept(PlaneDirections::Toward { a, b }) => format!(
            "plane through {centre} toward {} (u=1) and {}; noise seed {}",
            describe(a),
            describe(b),
            template.seed
        ),
        PlaneKind::Noise { directions_seed } => format!(
            "noise plane around seed {}, random directions {directions_seed}; units of |noise|; \
             {centre}",
            template.seed
        ),
    };
    let labels: Vec<String> = values.iter().map(|&x| format_value(x)).collect();
    Ok(Layout {
        title,
        columns: spec.grid,
        row_labels: labels.iter().rev().cloned().collect(),
        column_labels: labels,
        corner_label: "v\\u".into(),
        tiles,
    })
}

fn check_columns(columns: Option<usize>, count: usize, default: usize) -> Result<usize> {
    match columns {
        Some(0) => bail!("--columns must be at least 1"),
        Some(c) => Ok(c.min(count)),
        None => Ok(default.clamp(1, count.max(1))),
    }
}

/// The tiles of a line, labelled with t.
pub fn line_layout(template: &Recipe, spec: &LineSpec) -> Result<Layout> {
    spec.validate()?;
    let (lo, hi) = (-spec.beyond, 1.0 + spec.beyond);
    let last = (spec.points - 1) as f64;
    let tiles = (0..spec.points)
        .map(|i| {
            let t = lo + (hi - lo) * i as f64 / last;
            let point = ConceptPoint::Line {
                from: Box::new(spec.from.clone()),
                to: Box::new(spec.to.clone()),
                t,
                slerp: spec.slerp,
            };
            LayoutTile {
                recipe: at_point(template, point),
                label: format_value(t),
            }
        })
        .collect();
    let default_columns = if spec.points <= 16 {
        spec.points
    } else {
        (spec.points as f64).sqrt().ceil() as usize
    };
    Ok(Layout {
        title: format!(
            "{} from {} (t=0) to {} (t=1); noise seed {}",
            if spec.slerp { "slerp" } else { "line" },
            describe(&spec.from),
            describe(&spec.to),
            template.seed
        ),
        columns: check_columns(spec.columns, spec.points, default_columns)?,
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        tiles,
    })
}

/// The tiles of a sample of random points, labelled with their seeds.
pub fn sample_layout(template: &Recipe, spec: &SampleSpec) -> Result<Layout> {
    spec.validate()?;
    let tiles = (0..spec.count as u64)
        .map(|i| {
            let seed = spec.first_seed.wrapping_add(i);
            let point = ConceptPoint::Random {
                seed,
                reference_prompts: spec.reference_prompts.clone(),
            };
            LayoutTile {
                recipe: Recipe {
                    seed,
                    ..at_point(template, point)
                },
                label: seed.to_string(),
            }
        })
        .collect();
    let square = (spec.count as f64).sqrt().ceil() as usize;
    Ok(Layout {
        title: format!(
            "random points of interconcept space (statistics of {} prompts), by seed",
            spec.reference_prompts.len()
        ),
        columns: check_columns(spec.columns, spec.count, square)?,
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        tiles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_symmetric_with_an_exact_middle() {
        assert_eq!(axis(1, 2.0), vec![0.0]);
        assert_eq!(axis(5, 2.0), vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
        let a = axis(9, 1.3);
        assert_eq!(a[4], 0.0);
        assert_eq!(a[0], -a[8]);
        assert_eq!(axis(0, 1.0), Vec::<f64>::new());
    }

    #[test]
    fn values_format_short() {
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(-0.001), "0");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(-0.25), "-0.25");
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(1.0 / 3.0), "0.33");
    }
}
