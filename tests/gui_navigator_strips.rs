//! The navigator's Line strip and Random gallery driven through egui_kittest, over a real worker
//! on the embedded model: the widgets set up a line (or a gallery), the button asks for exactly
//! the recipes the command line's `line` (or `sample`) lays, the tiles arrive with those
//! recipes, and a tile opened in the Picture tab is made again byte for byte.

mod gui_support;

use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use gui_support::app_over_embedded_model;
use interconcept::cli_navigator::caption_vocabulary;
use interconcept::engine::space::ConceptPoint;
use interconcept::gui::navigator::controls::Mode;
use interconcept::gui::navigator::tiles::{Ended, Purpose};
use interconcept::gui::{ExplorerApp, GenerateSettings, Tab};
use interconcept::navigator::{LineSpec, SampleSpec, line_layout, sample_layout};
use interconcept::recipe::Recipe;

/// The longest a test waits for the worker.
const WAIT: Duration = Duration::from_secs(120);

/// Steps the harness until `done` holds; fails after [`WAIT`].
fn step_until(
    harness: &mut Harness<'_, ExplorerApp>,
    what: &str,
    done: impl Fn(&ExplorerApp) -> bool,
) {
    gui_support::step_until(harness, what, WAIT, done, |app| {
        format!(
            "navigator job: {:?}; status {}",
            app.navigator()
                .jobs()
                .latest()
                .map(|j| (j.progress(), j.ended.clone())),
            app.status_text()
        )
    });
}

/// The app on the navigator tab, its model loaded, in `mode`.
fn navigator_in(mode: &str, settings: GenerateSettings) -> Harness<'static, ExplorerApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_eframe(|cc| app_over_embedded_model(cc, settings));
    step_until(&mut harness, "the model to load", |app| !app.is_busy());
    harness.state_mut().set_tab(Tab::Navigator);
    harness.step();
    harness.get_by_label(mode).click();
    harness.step();
    harness
}

/// Presses `button` and checks that it asks, for `purpose`, exactly the recipes `expected`
/// lays out from the template the first asked recipe was made from (the window's model, seed
/// and sampling); waits for them, checks that each came with its recipe, and that a second
/// press asks for nothing. Returns the recipes.
fn make_and_wait(
    harness: &mut Harness<'_, ExplorerApp>,
    button: &str,
    purpose: Purpose,
    expected: impl Fn(&Recipe) -> Vec<Recipe>,
) -> Vec<Recipe> {
    harness.get_by_label(button).click();
    harness.step();
    let job = harness
        .state()
        .navigator()
        .jobs()
        .latest()
        .expect("the button asked for tiles");
    assert_eq!(job.asked.purpose, purpose);
    let expected = expected(&job.asked.recipes[0]);
    assert_eq!(job.asked.recipes, expected);
    step_until(harness, "the tiles", |app| {
        app.navigator()
            .jobs()
            .latest()
            .is_some_and(|j| j.ended.is_some())
    });
    let nav = harness.state().navigator();
    let job = nav.jobs().latest().expect("the job");
    assert!(
        matches!(job.ended, Some(Ended::Done { .. })),
        "{:?}",
        job.ended
    );
    assert_eq!(nav.tiles().len(), expected.len());
    for recipe in &expected {
        let tile = nav.tiles().find(recipe).expect("every asked tile came");
        assert_eq!(
            &tile.recipe, recipe,
            "a tile carries the recipe it was asked with"
        );
        assert!(tile.texture().is_some());
        assert!(tile.scores.is_some(), "the meter scores every tile");
    }

    // Asking again makes nothing new.
    let jobs = harness.state().navigator().jobs().latest().map(|j| j.id);
    harness.get_by_label(button).click();
    harness.step();
    // The notice shows from the next frame on.
    harness.step();
    assert_eq!(
        harness.state().navigator().jobs().latest().map(|j| j.id),
        jobs
    );
    assert!(
        harness
            .query_by_label_contains("every tile is made already")
            .is_some()
    );
    expected
}

/// The strip's tile button whose label starts with "tile `label`".
fn tile_button<'a>(harness: &'a Harness<'_, ExplorerApp>, label: &str) -> egui_kittest::Node<'a> {
    let name = format!("tile {label}");
    harness.get_by(move |node| {
        node.role() == Role::Button && node.label().is_some_and(|l| l.starts_with(&name))
    })
}

/// Clicks the strip's tile whose label starts with `label`, opens it in the Picture tab and
/// checks that the picture made there from its recipe alone is the tile's, byte for byte.
fn opens_as_made(harness: &mut Harness<'_, ExplorerApp>, label: &str, recipe: &Recipe) {
    let tile_rgb = harness
        .state()
        .navigator()
        .tiles()
        .find(recipe)
        .expect("the tile")
        .picture
        .rgb
        .clone();
    tile_button(harness, label).click();
    harness.step();
    harness.step();
    harness.get_by_label("Open in Picture tab").click();
    harness.step();
    assert_eq!(harness.state().tab(), Tab::Picture);
    step_until(harness, "the picture", |app| {
        !app.is_busy() && app.last_picture().is_some()
    });
    let app = harness.state();
    assert_eq!(app.last_recipe(), Some(recipe));
    assert_eq!(
        app.last_picture().map(|p| &p.rgb),
        Some(&tile_rgb),
        "the single picture equals the tile of the same recipe"
    );
}

#[test]
fn the_line_strip_makes_the_command_lines_line_and_its_tiles_replay() {
    let settings = GenerateSettings {
        prompt: "a sandal".into(),
        seed: 2,
        num_steps: 3,
        ..GenerateSettings::default()
    };
    let mut harness = navigator_in("Line", settings);
    assert_eq!(harness.state().navigator().controls().mode, Mode::Line);

    // From the prompt (left empty) to a sneaker, 4 points, half a line past each end.
    harness
        .get_by(|node| node.placeholder() == Some("to"))
        .focus();
    harness.step();
    harness
        .get_by(|node| node.placeholder() == Some("to"))
        .type_text("a sneaker");
    harness.step();
    harness
        .get_by_role_and_label(Role::SpinButton, "points")
        .set_value_accesskit(4.0);
    harness
        .get_by_role_and_label(Role::SpinButton, "beyond")
        .set_value_accesskit(0.5);
    harness.step();
    let line = harness.state().navigator().controls().line.clone();
    assert_eq!(
        (line.to.as_str(), line.points, line.beyond),
        ("a sneaker", 4, 0.5)
    );

    // What the command line's `line --from "a sandal" --to "a sneaker" --points 4 --beyond 0.5`
    // lays, on the window's model, seed and sampling.
    let expected = make_and_wait(&mut harness, "Make line", Purpose::Line, |first| {
        let template = Recipe {
            prompt: "a sandal".into(),
            point: None,
            ..first.clone()
        };
        assert_eq!((template.seed, template.sampling.num_steps), (2, 3));
        let spec = LineSpec {
            from: ConceptPoint::Prompt("a sandal".into()),
            to: ConceptPoint::Prompt("a sneaker".into()),
            points: 4,
            beyond: 0.5,
            slerp: false,
            columns: None,
        };
        let layout = line_layout(&template, &spec).expect("a line");
        layout.tiles.into_iter().map(|t| t.recipe).collect()
    });
    for t in ["t=-0.5", "t=0.17", "t=0.83", "t=1.5"] {
        let _ = tile_button(&harness, t);
    }

    opens_as_made(&mut harness, "t=1.5", &expected[3]);
}

#[test]
fn the_gallery_makes_the_command_lines_sample_and_its_tiles_replay() {
    let settings = GenerateSettings {
        prompt: "a bag".into(),
        num_steps: 3,
        ..GenerateSettings::default()
    };
    let mut harness = navigator_in("Random gallery", settings);
    assert_eq!(harness.state().navigator().controls().mode, Mode::Gallery);
    harness
        .get_by_role_and_label(Role::SpinButton, "count")
        .set_value_accesskit(3.0);
    harness
        .get_by_role_and_label(Role::SpinButton, "first seed")
        .set_value_accesskit(7.0);
    harness.step();

    // What `sample --count 3 --seed 7` lays: each seed draws both the point (from the
    // statistics of the embedded model's captions) and the initial noise.
    let expected = make_and_wait(&mut harness, "Make gallery", Purpose::Gallery, |first| {
        let template = Recipe {
            prompt: "a bag".into(),
            point: None,
            ..first.clone()
        };
        let spec = SampleSpec {
            count: 3,
            first_seed: 7,
            reference_prompts: caption_vocabulary(),
            columns: None,
        };
        let layout = sample_layout(&template, &spec).expect("a sample");
        layout.tiles.into_iter().map(|t| t.recipe).collect()
    });
    assert_eq!(
        expected.iter().map(|r| r.seed).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );

    // Each tile is labelled with its seed and what the meter sees in it.
    let labels = [
        "t-shirt",
        "trousers",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ];
    for seed in 7..=9 {
        let label = tile_button(&harness, &format!("{seed} "))
            .accesskit_node()
            .label()
            .unwrap_or_default();
        assert!(
            labels.iter().any(|name| label.contains(name)),
            "tile {seed} names no concept: {label}"
        );
    }

    opens_as_made(&mut harness, "8 ", &expected[1]);
}
