//! Tests of the navigator's recipes: planes (of concept and of noise space), fields, mosaics.

use super::*;
use crate::engine::model::ModelId;
use crate::engine::pipeline::{Picture, SamplingParams};
use crate::engine::space::PlaneDirections;
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
    let random = PlaneKind::Concept(PlaneDirections::Random { seed: 1 });
    let recipe = plane_recipe(&t, &random, [0.25, -0.5]);
    assert_eq!(recipe.prompt, "a bag");
    assert_eq!(recipe.seed, 3);
    assert_eq!(plane_coordinates(&recipe, &t, &random), Some([0.25, -0.5]));
    // Another seed of directions, noise or step count is another plane.
    assert_eq!(
        plane_coordinates(
            &recipe,
            &t,
            &PlaneKind::Concept(PlaneDirections::Random { seed: 2 })
        ),
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
    let random = PlaneKind::Concept(PlaneDirections::Random { seed: 1 });
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

#[test]
fn noise_plane_tiles_keep_the_prompt_and_match_the_command_line() {
    let t = template();
    let controls = PlaneControls {
        space: PlaneSpace::Noise,
        // Toward prompts mean nothing in noise space.
        toward: true,
        directions_seed: 5,
        ..PlaneControls::default()
    };
    let kind = controls.kind();
    assert_eq!(kind, PlaneKind::Noise { directions_seed: 5 });
    assert_eq!(controls.unit(), "|noise|");
    assert!(!controls.is_toward());

    let recipe = plane_recipe(&t, &kind, [0.5, -0.5]);
    assert_eq!(recipe.prompt, "a bag");
    assert_eq!(recipe.point, None, "the conditioning is the prompt's own");
    assert_eq!(
        recipe.noise.as_deref(),
        Some(&NoisePoint::Plane {
            centre_seed: 3,
            directions_seed: 5,
            u: 0.5,
            v: -0.5,
        })
    );
    assert_eq!(plane_coordinates(&recipe, &t, &kind), Some([0.5, -0.5]));
    let concept = PlaneKind::Concept(PlaneDirections::Random { seed: 5 });
    assert_eq!(plane_coordinates(&recipe, &t, &concept), None);
    let concept_tile = plane_recipe(&t, &concept, [0.5, -0.5]);
    assert_eq!(plane_coordinates(&concept_tile, &t, &kind), None);

    // The command line's `plane --noise-plane --grid 3 --span 0.5` lays the same recipe at
    // the bottom right, so `interconcept replay` makes the window's tile again.
    let layout = crate::navigator::plane_layout(
        &t,
        &crate::navigator::PlaneSpec {
            centre: ConceptPoint::Prompt("a bag".into()),
            kind: kind.clone(),
            grid: 3,
            span: 0.5,
        },
    )
    .expect("a layout");
    assert_eq!(layout.tiles[8].recipe, recipe);
    assert!(plane_title(&t, &controls).starts_with(&layout.title[..40]));
}
