//! What the navigator's controls ask for, as recipes, and what comes back, as an island field
//! and as mosaics: plain data in, plain data out, so none of it needs a window to test.
//!
//! Every tile's recipe is the settings' template (prompt, seed, sampling and the current weight
//! edits) moved to a point of concept space, made exactly as the command line's `plane`,
//! `line` and `sample` make theirs, so a tile replays the same from either.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::tiles::{Tile, same_recipe};
use super::view::FillGrid;
use crate::cli_navigator::caption_vocabulary;
use crate::engine::space::{ConceptPoint, PlaneDirections};
use crate::mosaic::{Mosaic, MosaicStyle, MosaicTile};
use crate::navigator::island::ScoreField;
use crate::navigator::{
    Layout, LineSpec, SampleSpec, describe, format_value, line_layout, sample_layout,
};
use crate::recipe::Recipe;

/// The most samples along each side of the field an island is measured on.
pub const MAX_FIELD_SIDE: i64 = 65;

/// The most tiles along a line the panel offers.
pub const MAX_LINE_POINTS: usize = 64;

/// The furthest past each end of a line the panel offers, in lengths of the line.
pub const MAX_BEYOND: f64 = 4.0;

/// The most random points in one gallery the panel offers.
pub const MAX_GALLERY: usize = 256;

/// Which kind of walk through concept space the panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A plane through the prompt: a canvas to click, fill, zoom and pan.
    #[default]
    Plane,
    /// A line from one prompt to another, and beyond.
    Line,
    /// Random points of interconcept space.
    Gallery,
}

impl Mode {
    /// Every mode, in the order offered.
    pub const ALL: [Mode; 3] = [Mode::Plane, Mode::Line, Mode::Gallery];

    /// The mode's name on its button.
    pub fn title(self) -> &'static str {
        match self {
            Mode::Plane => "Plane",
            Mode::Line => "Line",
            Mode::Gallery => "Random gallery",
        }
    }
}

/// How the plane through the prompt is laid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlaneControls {
    /// Toward two prompts rather than in random directions.
    pub toward: bool,
    /// Seed of the random directions.
    pub directions_seed: u64,
    /// The prompt the first direction points to (at (1, 0)).
    pub toward_a: String,
    /// The prompt that sets the second direction.
    pub toward_b: String,
    /// Tiles along each side of a fill.
    pub grid: usize,
    /// Colour tiles by the concept's score and draw the island's shore.
    pub island: bool,
    /// The score label whose island is shown; `None`: the one the prompt names.
    pub concept: Option<usize>,
}

impl Default for PlaneControls {
    fn default() -> Self {
        Self {
            toward: false,
            directions_seed: 1,
            toward_a: String::new(),
            toward_b: String::new(),
            grid: 5,
            island: false,
            concept: None,
        }
    }
}

impl PlaneControls {
    /// What spans the plane.
    pub fn directions(&self) -> PlaneDirections {
        if self.toward {
            PlaneDirections::Toward {
                a: Box::new(ConceptPoint::Prompt(self.toward_a.clone())),
                b: Box::new(ConceptPoint::Prompt(self.toward_b.clone())),
            }
        } else {
            PlaneDirections::Random {
                seed: self.directions_seed,
            }
        }
    }

    /// The unit of u and v, in words.
    pub fn unit(&self) -> &'static str {
        if self.toward {
            "|a - centre|"
        } else {
            "|centre|"
        }
    }
}

/// How the line runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LineControls {
    /// The prompt at t = 0; empty: the settings' prompt.
    pub from: String,
    /// The prompt at t = 1.
    pub to: String,
    /// Tiles along the line.
    pub points: usize,
    /// How far past each end, in units of the line's length.
    pub beyond: f64,
    /// Along the great circle.
    pub slerp: bool,
}

impl Default for LineControls {
    fn default() -> Self {
        Self {
            from: String::new(),
            to: String::new(),
            points: 9,
            beyond: 0.25,
            slerp: false,
        }
    }
}

/// Which random points the gallery shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GalleryControls {
    /// How many.
    pub count: usize,
    /// Seed of the first; the others follow it.
    pub first_seed: u64,
    /// The reference prompts whose statistics the points follow, one a line.
    pub reference: String,
}

impl Default for GalleryControls {
    fn default() -> Self {
        Self {
            count: 16,
            first_seed: 0,
            reference: caption_vocabulary().join("\n"),
        }
    }
}

/// Everything the navigator's controls hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Controls {
    /// Which walk.
    pub mode: Mode,
    /// The plane's.
    pub plane: PlaneControls,
    /// The line's.
    pub line: LineControls,
    /// The gallery's.
    pub gallery: GalleryControls,
}

/// The template moved to `(u, v)` on the plane through its prompt.
pub fn plane_recipe(template: &Recipe, directions: &PlaneDirections, at: [f64; 2]) -> Recipe {
    let point = ConceptPoint::Plane {
        centre: Box::new(ConceptPoint::Prompt(template.prompt.clone())),
        directions: directions.clone(),
        u: at[0],
        v: at[1],
    };
    Recipe {
        prompt: point.anchor_prompt().to_string(),
        point: Some(Box::new(point)),
        noise: None,
        non_finite: false,
        ..template.clone()
    }
}

/// Where a tile sits on the plane of `template` and `directions`, if it is one of its tiles.
pub fn plane_coordinates(
    recipe: &Recipe,
    template: &Recipe,
    directions: &PlaneDirections,
) -> Option<[f64; 2]> {
    let Some(ConceptPoint::Plane { u, v, .. }) = recipe.point.as_deref() else {
        return None;
    };
    let at = [*u, *v];
    same_recipe(recipe, &plane_recipe(template, directions, at)).then_some(at)
}

/// A title for mosaics of the plane.
pub fn plane_title(template: &Recipe, plane: &PlaneControls) -> String {
    let centre = describe(&ConceptPoint::Prompt(template.prompt.clone()));
    if plane.toward {
        format!(
            "plane through {centre} toward {:?} (u=1) and {:?}; noise seed {}",
            plane.toward_a, plane.toward_b, template.seed
        )
    } else {
        format!(
            "plane through {centre}, random directions {}; units of |centre|; noise seed {}",
            plane.directions_seed, template.seed
        )
    }
}

/// The line's tiles, as the command line's `line` lays them.
pub fn line_tiles(template: &Recipe, line: &LineControls) -> Result<Layout> {
    let from = if line.from.trim().is_empty() {
        template.prompt.clone()
    } else {
        line.from.clone()
    };
    line_layout(
        template,
        &LineSpec {
            from: ConceptPoint::Prompt(from),
            to: ConceptPoint::Prompt(line.to.clone()),
            points: line.points,
            beyond: line.beyond,
            slerp: line.slerp,
            columns: None,
        },
    )
}

/// The gallery's tiles, as the command line's `sample` lays them.
pub fn gallery_tiles(template: &Recipe, gallery: &GalleryControls) -> Result<Layout> {
    let reference_prompts: Vec<String> = gallery
        .reference
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    sample_layout(
        template,
        &SampleSpec {
            count: gallery.count,
            first_seed: gallery.first_seed,
            reference_prompts,
            columns: None,
        },
    )
}

/// The field an island is measured on: the scores of the tiles that sit on `grid`'s lattice,
/// over the box they cover (at most [`MAX_FIELD_SIDE`] samples a side, around the grid), with
/// the places no tile covers missing. Tiles of several fills on one lattice add up.
pub fn island_field(scored: &[([f64; 2], f64)], grid: &FillGrid) -> Option<ScoreField> {
    let spacing = grid.spacing;
    let on_lattice = |x: f64| {
        let k = x / spacing;
        ((k - k.round()).abs() < 1e-6).then_some(k.round() as i64)
    };
    let half = MAX_FIELD_SIDE / 2;
    let middle = [
        grid.first[0] + grid.n as i64 / 2,
        grid.first[1] + grid.n as i64 / 2,
    ];
    let samples: Vec<([i64; 2], f64)> = scored
        .iter()
        .filter_map(|&(p, score)| Some(([on_lattice(p[0])?, on_lattice(p[1])?], score)))
        .filter(|(k, _)| (0..2).all(|a| (k[a] - middle[a]).abs() <= half))
        .collect();
    let lo = |a: usize| samples.iter().map(|(k, _)| k[a]).min();
    let hi = |a: usize| samples.iter().map(|(k, _)| k[a]).max();
    let (u0, u1, v0, v1) = (lo(0)?, hi(0)?, lo(1)?, hi(1)?);
    let values = |from: i64, to: i64| (from..=to).map(|k| k as f64 * spacing).collect();
    let mut field = ScoreField::new(values(u0, u1), values(v0, v1))?;
    for (k, score) in samples {
        field.set((k[0] - u0) as usize, (k[1] - v0) as usize, score);
    }
    Some(field)
}

/// A mosaic of plane tiles: a grid with the u values over the columns and the v values beside
/// the rows when the tiles fill one; otherwise a list, each tile labelled with its (u, v).
pub fn plane_mosaic(title: String, tiles: &[([f64; 2], &Tile)]) -> Result<Mosaic> {
    if tiles.is_empty() {
        bail!("no tiles in view to export");
    }
    let mut us: Vec<f64> = tiles.iter().map(|(p, _)| p[0]).collect();
    let mut vs: Vec<f64> = tiles.iter().map(|(p, _)| p[1]).collect();
    us.sort_by(f64::total_cmp);
    us.dedup();
    vs.sort_by(|a, b| b.total_cmp(a));
    vs.dedup();
    let at = |u: f64, v: f64| tiles.iter().find(|(p, _)| p[0] == u && p[1] == v);
    let complete = us.len() * vs.len() == tiles.len()
        && vs.iter().all(|&v| us.iter().all(|&u| at(u, v).is_some()));
    let tile = |t: &Tile, label: String| MosaicTile {
        picture: t.picture.clone(),
        label,
        recipe: t.recipe.clone(),
    };
    if complete {
        let cells = vs
            .iter()
            .flat_map(|&v| us.iter().map(move |&u| (u, v)))
            .filter_map(|(u, v)| at(u, v))
            .map(|(_, t)| tile(t, String::new()))
            .collect();
        return Ok(Mosaic {
            title,
            columns: us.len(),
            column_labels: us.iter().map(|&u| format_value(u)).collect(),
            row_labels: vs.iter().map(|&v| format_value(v)).collect(),
            corner_label: "v\\u".into(),
            tiles: cells,
            style: MosaicStyle::default(),
        });
    }
    let mut sorted: Vec<&([f64; 2], &Tile)> = tiles.iter().collect();
    sorted.sort_by(|a, b| b.0[1].total_cmp(&a.0[1]).then(a.0[0].total_cmp(&b.0[0])));
    Ok(Mosaic {
        title,
        columns: (sorted.len() as f64).sqrt().ceil() as usize,
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        tiles: sorted
            .into_iter()
            .map(|(p, t)| tile(t, format!("{}, {}", format_value(p[0]), format_value(p[1]))))
            .collect(),
        style: MosaicStyle::default(),
    })
}

/// A mosaic of a layout's tiles that have been made, each with its layout label.
pub fn layout_mosaic(layout: &Layout, made: &[Option<&Tile>]) -> Result<Mosaic> {
    let tiles: Vec<MosaicTile> = layout
        .tiles
        .iter()
        .zip(made)
        .filter_map(|(slot, tile)| {
            tile.map(|t| MosaicTile {
                picture: t.picture.clone(),
                label: slot.label.clone(),
                recipe: t.recipe.clone(),
            })
        })
        .collect();
    if tiles.is_empty() {
        bail!("no tiles made yet to export");
    }
    Ok(Mosaic {
        title: layout.title.clone(),
        columns: layout.columns.min(tiles.len()).max(1),
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        tiles,
        style: MosaicStyle::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::ModelId;
    use crate::engine::pipeline::{Picture, SamplingParams};
    use crate::navigator::island::{ISLAND_THRESHOLD, Radius, island_radii};

    fn template() -> Recipe {
        Recipe::for_prompt(
            ModelId {
                name: "m".into(),
                weights_hash: "0".into(),
                variant: None,
            },
            "a bag",
            3,
            SamplingParams {
                num_steps: 2,
                guidance_scale: 1.0,
                sampler: Default::default(),
                width: 2,
                height: 2,
            },
        )
    }

    #[test]
    fn plane_tiles_belong_to_their_plane_only() {
        let t = template();
        let random = PlaneDirections::Random { seed: 1 };
        let recipe = plane_recipe(&t, &random, [0.25, -0.5]);
        assert_eq!(recipe.prompt, "a bag");
        assert_eq!(recipe.seed, 3);
        assert_eq!(plane_coordinates(&recipe, &t, &random), Some([0.25, -0.5]));
        // Another seed of directions, noise or step count is another plane.
        assert_eq!(
            plane_coordinates(&recipe, &t, &PlaneDirections::Random { seed: 2 }),
            None
        );
        let other_noise = Recipe {
            seed: 4,
            ..t.clone()
        };
        assert_eq!(plane_coordinates(&recipe, &other_noise, &random), None);
        assert_eq!(plane_coordinates(&t, &t, &random), None);
    }

    #[test]
    fn fields_gather_the_lattice_tiles_of_several_fills() {
        let grid = crate::gui::navigator::view::PlaneView::default().fill_grid(3);
        assert_eq!(grid.spacing, 0.5);
        // A disk of radius 0.75 sampled on two overlapping fills and one stray click.
        let score = |p: [f64; 2]| if p[0].hypot(p[1]) < 0.75 { 1.0 } else { 0.0 };
        let mut scored: Vec<([f64; 2], f64)> = Vec::new();
        for first in [[-1, -1], [0, -1]] {
            for i in 0..3 {
                for j in 0..3 {
                    let p = [f64::from(first[0] + i) * 0.5, f64::from(first[1] + j) * 0.5];
                    scored.push((p, score(p)));
                }
            }
        }
        scored.push(([0.13, 0.2], 1.0));
        let field = island_field(&scored, &grid).expect("a field");
        assert_eq!(field.us(), &[-0.5, 0.0, 0.5, 1.0]);
        assert_eq!(field.vs(), &[-0.5, 0.0, 0.5]);
        assert_eq!(field.known(), 12);
        let radii = island_radii(&field, ISLAND_THRESHOLD);
        // Between the samples at 0.5 (inside) and 1.0 (outside).
        assert_eq!(radii.plus_u, Radius::Shore(0.75));
        assert_eq!(radii.minus_u, Radius::Beyond(0.5));
        assert!(island_field(&[], &grid).is_none());
    }

    #[test]
    fn mosaics_are_grids_when_the_tiles_fill_one() {
        let mut store = super::super::tiles::TileStore::default();
        let t = template();
        let random = PlaneDirections::Random { seed: 1 };
        let points = [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]];
        for p in points {
            let picture = Picture {
                width: 2,
                height: 2,
                rgb: vec![9; 12],
                non_finite: false,
            };
            store.insert(None, plane_recipe(&t, &random, p), picture, None, 0.5);
        }
        let tiles: Vec<([f64; 2], &Tile)> = points
            .iter()
            .map(|&p| (p, store.find(&plane_recipe(&t, &random, p)).expect("made")))
            .collect();
        let mosaic = plane_mosaic("t".into(), &tiles).expect("a mosaic");
        assert_eq!(mosaic.columns, 2);
        assert_eq!(mosaic.column_labels, vec!["0", "0.5"]);
        assert_eq!(mosaic.row_labels, vec!["0.5", "0"]);
        // Row-major from the top: v = 0.5 first.
        assert_eq!(
            plane_coordinates(&mosaic.tiles[0].recipe, &t, &random),
            Some([0.0, 0.5])
        );
        mosaic.render().expect("it draws");

        let three = plane_mosaic("t".into(), &tiles[..3]).expect("a list");
        assert!(three.column_labels.is_empty());
        assert_eq!(three.tiles[0].label, "0, 0.5");
        assert!(plane_mosaic("t".into(), &[]).is_err());
    }
}
