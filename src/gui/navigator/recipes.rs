//! What the navigator's controls ask for, as recipes, and what comes back, as an island field
//! and as mosaics: plain data in, plain data out, so none of it needs a window to test.
//!
//! Every tile's recipe is the settings' template (prompt, seed, sampling and the current weight
//! edits) moved to a point of concept space, or, on a noise plane, started from a point of
//! initial-noise space, made exactly as the command line's `plane` (`--noise-plane`), `line`
//! and `sample` make theirs, so a tile replays the same from either.

use anyhow::{Result, bail};

use super::controls::{GalleryControls, LineControls, PlaneControls, PlaneSpace};
use super::tiles::{Tile, same_recipe};
use super::view::FillGrid;
use crate::engine::space::{ConceptPoint, NoisePoint};
use crate::mosaic::{Mosaic, MosaicStyle, MosaicTile};
use crate::navigator::island::ScoreField;
use crate::navigator::{
    Layout, LineSpec, PlaneKind, SampleSpec, describe, format_value, line_layout, sample_layout,
};
use crate::recipe::Recipe;

/// The most samples along each side of the field an island is measured on.
pub const MAX_FIELD_SIDE: i64 = 65;

/// The template moved to `(u, v)` on the plane through its prompt: its conditioning on a
/// concept plane, or its initial noise on a noise plane around the noise of its seed (the
/// prompt's own conditioning stays).
pub fn plane_recipe(template: &Recipe, kind: &PlaneKind, at: [f64; 2]) -> Recipe {
    match kind {
        PlaneKind::Concept(directions) => {
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
        PlaneKind::Noise { directions_seed } => Recipe {
            point: None,
            noise: Some(Box::new(NoisePoint::Plane {
                centre_seed: template.seed,
                directions_seed: *directions_seed,
                u: at[0],
                v: at[1],
            })),
            non_finite: false,
            ..template.clone()
        },
    }
}

/// Where a tile sits on the plane of `template` and `kind`, if it is one of its tiles.
pub fn plane_coordinates(recipe: &Recipe, template: &Recipe, kind: &PlaneKind) -> Option<[f64; 2]> {
    let at = match (kind, recipe.point.as_deref(), recipe.noise.as_deref()) {
        (PlaneKind::Concept(_), Some(ConceptPoint::Plane { u, v, .. }), _) => [*u, *v],
        (PlaneKind::Noise { .. }, None, Some(NoisePoint::Plane { u, v, .. })) => [*u, *v],
        _ => return None,
    };
    same_recipe(recipe, &plane_recipe(template, kind, at)).then_some(at)
}

/// A title for mosaics of the plane.
pub fn plane_title(template: &Recipe, plane: &PlaneControls) -> String {
    let centre = describe(&ConceptPoint::Prompt(template.prompt.clone()));
    if plane.space == PlaneSpace::Noise {
        format!(
            "noise plane around seed {}, random directions {}; units of |noise|; {centre}",
            template.seed, plane.directions_seed
        )
    } else if plane.toward {
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
mod tests;
