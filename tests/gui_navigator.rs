//! The navigator tab driven through egui_kittest, over a real worker on the embedded model: a
//! click on the plane canvas makes a tile there, Fill makes a 3 x 3 grid centre first, and the
//! island overlay colours the tiles and reports the island's reach (snapshot); on the noise
//! plane a click moves the starting noise, and the tile opened in the Picture tab is made again
//! byte for byte.
//!
//! The snapshot renders with wgpu; without a GPU, wgpu falls back to a software adapter.

mod gui_support;

use std::time::Duration;

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use gui_support::app_over_embedded_model;
use interconcept::engine::space::{ConceptPoint, NoisePoint};
use interconcept::gui::jobs::Status;
use interconcept::gui::navigator::controls::PlaneSpace;
use interconcept::gui::navigator::tiles::{Ended, Purpose};
use interconcept::gui::{ExplorerApp, GenerateSettings, Tab};
use interconcept::recipe::Recipe;

/// The longest a test waits for the worker.
const WAIT: Duration = Duration::from_secs(120);

/// The window size of the tests and of the snapshot.
const WINDOW: egui::Vec2 = egui::vec2(900.0, 620.0);

/// Steps the harness until `done` holds; fails after [`WAIT`].
fn step_until(
    harness: &mut Harness<'_, ExplorerApp>,
    what: &str,
    done: impl Fn(&ExplorerApp) -> bool,
) {
    gui_support::step_until(harness, what, WAIT, done, |app| {
        format!(
            "navigator job: {:?}",
            app.navigator()
                .jobs()
                .latest()
                .map(|j| (j.progress(), j.ended.clone()))
        )
    });
}

/// Where a plane tile's recipe sits.
fn plane_at(recipe: &Recipe) -> [f64; 2] {
    match recipe.point.as_deref() {
        Some(ConceptPoint::Plane { u, v, .. }) => [*u, *v],
        other => panic!("not a plane tile: {other:?}"),
    }
}

#[test]
fn a_click_makes_a_tile_and_fill_makes_a_grid_centre_first() {
    let settings = GenerateSettings {
        prompt: "a dress".into(),
        seed: 3,
        num_steps: 4,
        ..GenerateSettings::default()
    };
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .wgpu()
        .build_eframe(|cc| app_over_embedded_model(cc, settings));
    step_until(&mut harness, "the model to load", |app| !app.is_busy());
    assert_eq!(harness.state().status(), &Status::Ready);
    harness.state_mut().set_tab(Tab::Navigator);
    harness.step();

    // A click on the canvas, up and to the right of its middle, asks for that one point.
    let canvas = harness.get_by_label_contains("plane canvas").rect();
    let pos = canvas.center() + egui::vec2(60.0, -45.0);
    harness.hover_at(pos);
    harness.step();
    harness.drag_at(pos);
    harness.step();
    harness.drop_at(pos);
    harness.step();
    let nav = harness.state().navigator();
    let job = nav.jobs().latest().expect("the click asked for a tile");
    assert_eq!(job.asked.purpose, Purpose::Point);
    assert_eq!(job.asked.recipes.len(), 1);
    let clicked = plane_at(&job.asked.recipes[0]);
    let expected = nav.view().to_plane(canvas, pos);
    assert!(
        (clicked[0] - expected[0]).abs() < 1e-3 && (clicked[1] - expected[1]).abs() < 1e-3,
        "clicked {clicked:?}, the view puts {expected:?} there"
    );
    assert!(clicked[0] > 0.0 && clicked[1] > 0.0, "{clicked:?}");
    assert_eq!(job.asked.recipes[0].sampling.num_steps, 4);
    assert_eq!(job.asked.recipes[0].seed, 3);

    step_until(&mut harness, "the clicked tile", |app| {
        app.navigator().tiles().len() == 1 && app.navigator().drawn() == 1
    });
    assert!(harness.query_by_label("plane canvas, 1 tiles").is_some());
    let tile = harness
        .state()
        .navigator()
        .tiles()
        .iter()
        .next()
        .expect("a tile");
    assert_eq!(plane_at(&tile.recipe), clicked);
    assert!(tile.texture().is_some(), "the tile has its texture");
    assert!(
        tile.scores.is_some(),
        "the embedded model's meter scores tiles"
    );

    // A 3 x 3 fill: nine new tiles, asked centre first.
    harness
        .get_by_role_and_label(egui::Role::SpinButton, "grid")
        .set_value_accesskit(3.0);
    harness.step();
    assert_eq!(harness.state().navigator().controls().plane.grid, 3);
    harness.get_by_label("Fill").click();
    harness.step();
    let job = harness
        .state()
        .navigator()
        .jobs()
        .latest()
        .expect("Fill asked for tiles");
    assert_eq!(job.asked.purpose, Purpose::Fill);
    assert_eq!(job.asked.recipes.len(), 9);
    let asked: Vec<[f64; 2]> = job.asked.recipes.iter().map(plane_at).collect();
    assert_eq!(asked[0], [0.0, 0.0], "the centre first: {asked:?}");
    let spacing = asked.iter().map(|p| p[0].abs()).fold(0.0, f64::max);
    assert!(spacing > 0.0);
    for p in &asked[1..5] {
        assert!(
            (p[0].abs() + p[1].abs() - spacing).abs() < 1e-12,
            "edge neighbours before corners: {asked:?}"
        );
    }

    step_until(&mut harness, "the grid", |app| {
        app.navigator()
            .jobs()
            .latest()
            .is_some_and(|j| j.ended.is_some())
    });
    let nav = harness.state().navigator();
    let job = nav.jobs().latest().expect("the fill");
    assert!(
        matches!(job.ended, Some(Ended::Done { .. })),
        "{:?}",
        job.ended
    );
    assert_eq!(job.progress(), (9, 9));
    assert_eq!(nav.tiles().len(), 10);
    assert_eq!(nav.drawn(), 10, "every tile is on the canvas");
    let fill_arrivals: Vec<[f64; 2]> = nav
        .tiles()
        .iter()
        .skip(1)
        .map(|t| plane_at(&t.recipe))
        .collect();
    assert_eq!(fill_arrivals[0], [0.0, 0.0], "the centre came first");
    assert!(
        harness
            .query_by_label_contains("last fill: 9 tiles")
            .is_some()
    );

    // The island overlay: the shore, and the radii along the axes.
    harness.get_by_label("Island").click();
    harness.step();
    harness.step();
    assert!(harness.state().navigator().controls().plane.island);
    let (label, radii) = harness
        .state()
        .navigator()
        .island()
        .expect("an island measured on the grid")
        .clone();
    assert_eq!(label, "dress");
    // A few steps make a dress the meter recognises at the centre, and it fades within
    // the grid's first ring (the scores are deterministic on the CPU).
    assert!(
        radii
            .named()
            .iter()
            .any(|(_, r)| r.shore().is_some_and(|r| r > 0.0 && r < spacing)),
        "{radii:?}"
    );
    assert!(
        harness
            .query_by_label_contains("dress island radius")
            .is_some()
    );

    harness.remove_cursor();
    harness.step();
    // The fill's time differs between runs.
    let timing = harness.get_by_label_contains("last fill").rect();
    harness.mask(timing.expand(2.0));
    harness.snapshot("navigator_island");
}

#[test]
fn a_noise_plane_moves_the_starting_noise_and_its_tiles_open_as_they_were_made() {
    let settings = GenerateSettings {
        prompt: "a sneaker".into(),
        seed: 5,
        num_steps: 3,
        ..GenerateSettings::default()
    };
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .build_eframe(|cc| app_over_embedded_model(cc, settings));
    step_until(&mut harness, "the model to load", |app| !app.is_busy());
    harness.state_mut().set_tab(Tab::Navigator);
    harness.step();

    // Switch the canvas to the noise plane: toward prompts make no sense there.
    harness.get_by_label("initial-noise plane").click();
    harness.step();
    assert_eq!(
        harness.state().navigator().controls().plane.space,
        PlaneSpace::Noise
    );
    assert_eq!(
        harness.state().navigator().controls().plane.unit(),
        "|noise|"
    );

    // A click off the centre asks for a tile with the prompt's own conditioning and moved noise.
    let canvas = harness.get_by_label_contains("plane canvas").rect();
    let pos = canvas.center() + egui::vec2(-50.0, 30.0);
    harness.drag_at(pos);
    harness.step();
    harness.drop_at(pos);
    harness.step();
    let job = harness
        .state()
        .navigator()
        .jobs()
        .latest()
        .expect("the click asked for a tile");
    let asked = job.asked.recipes[0].clone();
    assert_eq!(asked.prompt, "a sneaker");
    assert_eq!(asked.point, None);
    let Some(NoisePoint::Plane {
        centre_seed,
        directions_seed,
        u,
        v,
    }) = asked.noise.as_deref().cloned()
    else {
        panic!("not a noise-plane tile: {asked:?}");
    };
    assert_eq!((centre_seed, directions_seed), (5, 1));
    assert!(u < 0.0 && v < 0.0, "({u}, {v})");
    step_until(&mut harness, "the tile", |app| {
        app.navigator().tiles().len() == 1 && app.navigator().drawn() == 1
    });
    let tile = harness
        .state()
        .navigator()
        .tiles()
        .iter()
        .next()
        .expect("a tile");
    assert_eq!(tile.recipe, asked);
    let tile_rgb = tile.picture.rgb.clone();

    // The same point of the text-embedding plane is another tile, not this one.
    harness.get_by_label("text-embedding plane").click();
    harness.step();
    assert_eq!(harness.state().navigator().drawn(), 0);
    harness.get_by_label("initial-noise plane").click();
    harness.step();
    assert_eq!(harness.state().navigator().drawn(), 1);

    // Clicking the tile opens it; the Picture tab makes it again from its recipe, the same.
    harness.drag_at(pos);
    harness.step();
    harness.drop_at(pos);
    harness.step();
    assert!(
        harness.query_all_by_label_contains("noise (-").any(|n| n
            .accesskit_node()
            .label()
            .is_some_and(|l| l.contains("around seed 5"))),
        "the tile window names where in noise space the tile is"
    );
    harness.get_by_label("Open in Picture tab").click();
    harness.step();
    assert_eq!(harness.state().tab(), Tab::Picture);
    step_until(&mut harness, "the picture", |app| {
        !app.is_busy() && app.last_picture().is_some()
    });
    let app = harness.state();
    assert_eq!(app.last_recipe(), Some(&asked));
    assert_eq!(
        app.last_picture().map(|p| &p.rgb),
        Some(&tile_rgb),
        "the picture equals the tile, byte for byte"
    );
}
