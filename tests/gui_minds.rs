//! The alien-minds tab driven through egui_kittest over a real worker on the embedded model:
//! ticking a module makes the picture again at once (and unticking gives the original bytes
//! back), the noise slider regenerates as it moves, a short noise sequence comes back scored
//! and feeds the concept plot, and a sweep run again keeps the tiles it already has.

mod gui_support;

use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gui_support::app_over_embedded_model;
use interconcept::engine::model::Component;
use interconcept::engine::surgery::WeightEdit;
use interconcept::gui::minds::{RunStatus, SequenceSpec, Slider};
use interconcept::gui::{ExplorerApp, GenerateSettings, Tab};

/// The longest a test waits for the worker.
const WAIT: Duration = Duration::from_secs(120);

/// The window size of the tests and of the snapshot: the tab needs room for its tree, picture,
/// strip and plot.
const WINDOW: egui::Vec2 = egui::vec2(1100.0, 900.0);

/// A bag (a concept the meter knows), in three steps.
fn settings() -> GenerateSettings {
    GenerateSettings {
        prompt: "a bag".into(),
        seed: 5,
        num_steps: 3,
        guidance_scale: 4.0,
        ..GenerateSettings::default()
    }
}

/// Steps the harness until `done` holds; fails after [`WAIT`].
fn step_until(
    harness: &mut Harness<'_, ExplorerApp>,
    what: &str,
    done: impl Fn(&ExplorerApp) -> bool,
) {
    gui_support::step_until(harness, what, WAIT, done, |app| {
        format!("status: {}", app.status_text())
    });
}

/// The window on the alien-minds tab with the model loaded and the intact picture made;
/// returns the intact picture's bytes.
fn minds_tab(harness: &mut Harness<'_, ExplorerApp>) -> Vec<u8> {
    step_until(harness, "the model to load", |app| !app.is_busy());
    harness.state_mut().generate();
    step_until(harness, "the intact picture", |app| !app.is_busy());
    let picture = harness.state().last_picture().expect("the intact picture");
    let intact = picture.rgb.clone();
    harness.state_mut().set_tab(Tab::Minds);
    harness.step();
    intact
}

/// Scrolls the tab until the button is in view, then clicks it.
fn click_in_view(harness: &mut Harness<'_, ExplorerApp>, label: &str) {
    harness.get_by_label(label).scroll_to_me();
    for _ in 0..20 {
        harness.step();
    }
    harness.get_by_label(label).click();
}

fn last_edits(app: &ExplorerApp) -> Vec<WeightEdit> {
    app.last_recipe()
        .map(|r| r.edits.clone())
        .unwrap_or_default()
}

#[test]
fn ticking_a_module_changes_the_picture_and_unticking_gives_it_back() {
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .build_eframe(|cc| app_over_embedded_model(cc, settings()));
    let intact = minds_tab(&mut harness);

    harness.get_by_label("mid_block").click();
    harness.step();
    assert!(
        harness.state().is_busy(),
        "a tick should make the picture again at once"
    );
    step_until(&mut harness, "the knocked-out picture", |app| {
        !app.is_busy()
    });
    let knocked_out = harness
        .state()
        .last_picture()
        .expect("a picture")
        .rgb
        .clone();
    assert_ne!(
        knocked_out, intact,
        "knocking out the mid block should change the picture"
    );
    assert_eq!(
        last_edits(harness.state()),
        vec![WeightEdit::Knockout {
            component: Component::Unet,
            module: "mid_block".into()
        }]
    );
    // The count says what is selected: the mid block's 26 modules.
    assert!(
        harness
            .query_all_by_label_contains("26 of 163 modules ticked")
            .next()
            .is_some(),
        "the tick count should follow the tick"
    );

    harness.get_by_label("mid_block").click();
    harness.step();
    assert!(
        harness.state().is_busy(),
        "unticking should make the picture again"
    );
    step_until(&mut harness, "the healed picture", |app| !app.is_busy());
    assert_eq!(
        harness.state().last_picture().expect("a picture").rgb,
        intact,
        "unticking should give back the exact bytes of the intact picture"
    );
    assert!(last_edits(harness.state()).is_empty());
}

#[test]
fn the_noise_slider_regenerates_and_a_sequence_feeds_the_concept_plot() {
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .wgpu()
        .build_eframe(|cc| app_over_embedded_model(cc, settings()));
    let intact = minds_tab(&mut harness);

    // Dragging the slider: each new value asks for a picture; the newest wins.
    for percent in [5.0, 20.0] {
        harness
            .get_by_role_and_label(Role::Slider, "noise %")
            .set_value_accesskit(percent);
        harness.step();
        assert!(
            harness.state().is_busy(),
            "moving the slider should regenerate"
        );
    }
    step_until(&mut harness, "the noisy picture", |app| !app.is_busy());
    assert!(
        matches!(
            last_edits(harness.state()).as_slice(),
            [WeightEdit::MixNoise { percent, .. }] if *percent == 20.0
        ),
        "{:?}",
        last_edits(harness.state())
    );
    assert_ne!(
        harness.state().last_picture().expect("a picture").rgb,
        intact
    );

    // A three-value sequence of the noise, from none.
    *harness.state_mut().minds_mut().sequence_spec_mut() = SequenceSpec {
        slider: Slider::Noise,
        start: 0.0,
        step: 10.0,
        count: 3,
    };
    click_in_view(&mut harness, "Run sequence");
    harness.step();
    step_until(&mut harness, "the sequence", |app| {
        app.minds().sequence().tiles.status != RunStatus::Running
    });
    let run = harness.state().minds().sequence();
    assert_eq!(run.tiles.status, RunStatus::Done);
    assert_eq!(run.tiles.labels, vec!["0%", "10%", "20%"]);
    assert_eq!(run.concept.as_ref().map(|c| c.label.as_str()), Some("bag"));
    let curve = run.curve();
    assert_eq!(
        curve.len(),
        3,
        "every tile should come back scored: {curve:?}"
    );
    assert!(
        curve.iter().all(|[_, p]| (0.0..=1.0).contains(p)),
        "{curve:?}"
    );
    assert!(
        run.tiles.recipes[0].edits.is_empty(),
        "0% noise edits nothing"
    );
    // The 0% tile is the intact picture: same recipe, same bytes.
    let first = run.tiles.results[0].as_ref().expect("the first tile");
    assert_eq!(first.picture.rgb, intact);
    // The plot's verdict is on screen.
    let verdict = harness
        .query_by_label_contains("is lost at")
        .or_else(|| harness.query_by_label_contains("holds over"));
    assert!(
        verdict.is_some(),
        "the plot should say where the concept is lost"
    );

    // The elapsed time differs between runs: keep the status line out of the snapshot, and
    // the mouse pointer too.
    harness.remove_cursor();
    harness.step();
    let elapsed = harness.get_by_label_contains("done in").rect();
    harness.mask(egui::Rect::from_min_max(
        elapsed.min,
        egui::pos2(WINDOW.x, elapsed.max.y),
    ));
    harness.snapshot("minds");
}

#[test]
fn a_sweep_run_again_keeps_its_tiles_and_makes_only_the_new_ones() {
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .build_eframe(|cc| app_over_embedded_model(cc, settings()));
    minds_tab(&mut harness);

    harness.state_mut().minds_mut().tree_mut().filter = "mid_block.resnets.0.conv".into();
    harness.step();
    click_in_view(&mut harness, "Run sweep");
    harness.step();
    step_until(&mut harness, "the sweep", |app| {
        app.minds().sweep().tiles.status != RunStatus::Running
    });
    let sweep = harness.state().minds().sweep();
    assert_eq!(sweep.tiles.status, RunStatus::Done);
    let first_labels = sweep.tiles.labels.clone();
    assert!(
        first_labels.len() >= 3,
        "the intact tile and the convolutions: {first_labels:?}"
    );
    assert!(
        sweep
            .tiles
            .results
            .iter()
            .all(|r| r.as_ref().is_some_and(|r| r.score.is_some()))
    );

    // A wider filter: the tiles made stay, only the new modules are asked for.
    harness.state_mut().minds_mut().tree_mut().filter = "mid_block.resnets.0".into();
    harness.step();
    click_in_view(&mut harness, "Run sweep");
    harness.step();
    let sweep = harness.state().minds().sweep();
    assert!(sweep.tiles.labels.len() > first_labels.len());
    assert_eq!(sweep.tiles.num_made(), first_labels.len());
    step_until(&mut harness, "the wider sweep", |app| {
        app.minds().sweep().tiles.status != RunStatus::Running
    });
    assert_eq!(
        harness.state().minds().sweep().tiles.status,
        RunStatus::Done
    );
}

#[test]
fn a_blown_up_mind_is_marked_and_heals() {
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .build_eframe(|cc| app_over_embedded_model(cc, settings()));
    let intact = minds_tab(&mut harness);

    // A recipe whose weights overflow: the controls cannot show it, so it is kept verbatim.
    let blown = vec![WeightEdit::ScaleAll {
        factor: 1e30,
        components: vec![Component::Unet],
    }];
    harness.state_mut().minds_mut().set_edits(blown.clone());
    harness.state_mut().generate();
    step_until(&mut harness, "the blown-up picture", |app| !app.is_busy());
    let recipe = harness.state().last_recipe().expect("a recipe");
    assert!(recipe.non_finite, "the picture should be marked as NaN/inf");
    assert_eq!(recipe.edits, blown);
    assert!(
        harness
            .query_all_by_label_contains("also from the recipe")
            .next()
            .is_some()
    );
    // The Picture tab says the picture is a marker.
    harness.state_mut().set_tab(interconcept::gui::Tab::Picture);
    harness.step();
    harness.step();
    assert!(harness.query_by_label_contains("NaN or infinity").is_some());
    harness.state_mut().set_tab(interconcept::gui::Tab::Minds);
    harness.step();
    harness.step();

    harness.get_by_label("Heal").click();
    harness.step();
    step_until(&mut harness, "the healed picture", |app| !app.is_busy());
    assert_eq!(
        harness.state().last_picture().expect("a picture").rgb,
        intact
    );
    assert!(harness.state().minds().edits().is_empty());
}
