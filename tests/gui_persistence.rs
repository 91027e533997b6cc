//! The navigator's and the alien-minds tab's controls survive a restart: an app restored from
//! eframe storage shows the stored values in its widgets, a change made through a widget is
//! what `save` writes, and a second app restored from that shows it too.
//!
//! Drawn without the wgpu renderer, so the navigator also takes its egui-shape fallback here.

mod gui_support;

use std::collections::HashMap;
use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use gui_support::step_until;
use interconcept::engine::model::Component;
use interconcept::gui::minds::settings::{MindsSettings, STORAGE_KEY as MINDS_KEY};
use interconcept::gui::minds::{EditKind, Slider};
use interconcept::gui::navigator::controls::Mode;
use interconcept::gui::navigator::settings::{NavigatorSettings, STORAGE_KEY as NAVIGATOR_KEY};
use interconcept::gui::navigator::view::PlaneView;
use interconcept::gui::{ExplorerApp, GenerateSettings, Tab};

/// The longest a test waits for the worker.
const WAIT: Duration = Duration::from_secs(120);

/// eframe's storage, in memory.
#[derive(Default, Clone)]
struct MemoryStorage(HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }

    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }

    fn flush(&mut self) {}
}

/// What a user left behind: every persisted control away from its default.
fn stored() -> MemoryStorage {
    let mut navigator = NavigatorSettings::default();
    let controls = &mut navigator.controls;
    controls.plane.toward = true;
    controls.plane.toward_a = "a sandal".into();
    controls.plane.toward_b = "a bag".into();
    controls.plane.grid = 7;
    controls.plane.island = true;
    controls.line.from = "a shirt".into();
    controls.line.to = "a coat".into();
    controls.line.points = 5;
    controls.line.slerp = true;
    controls.gallery.count = 9;
    controls.gallery.first_seed = 40;
    navigator.view = PlaneView {
        centre: [0.5, -0.25],
        half_extent: 0.5,
    };
    let mut minds = MindsSettings {
        noise_percent: 12.5,
        scale_percent: 80.0,
        progressive_seed: 6,
        ..MindsSettings::default()
    };
    minds.tree.filter = "attn".into();
    minds.tree.brush.kind = EditKind::Randomize;
    minds.sequence.slider = Slider::Scale;
    minds.sequence.count = 5;

    let mut storage = MemoryStorage::default();
    eframe::set_value(&mut storage, NAVIGATOR_KEY, &navigator);
    eframe::set_value(&mut storage, MINDS_KEY, &minds);
    eframe::set_value(
        &mut storage,
        interconcept::gui::app::TAB_KEY,
        &Tab::Navigator,
    );
    eframe::set_value(
        &mut storage,
        interconcept::gui::settings::STORAGE_KEY,
        &GenerateSettings {
            prompt: "a dress".into(),
            num_steps: 2,
            ..GenerateSettings::default()
        },
    );
    storage
}

/// An app over the embedded model restored from `storage`, its model loaded.
fn restored(storage: &MemoryStorage) -> Harness<'static, ExplorerApp> {
    let storage = storage.clone();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 800.0))
        .build_eframe(move |cc| {
            let mut app = gui_support::app_over_embedded_model(cc, GenerateSettings::default());
            app.load_persisted(&storage);
            app
        });
    step_until(
        &mut harness,
        "the model to load",
        WAIT,
        |app| !app.is_busy(),
        |app| app.status_text(),
    );
    harness
}

/// The number a spin button or slider shows.
fn number(harness: &Harness<'_, ExplorerApp>, role: Role, label: &str) -> f64 {
    harness
        .get_by_role_and_label(role, label)
        .accesskit_node()
        .numeric_value()
        .unwrap_or_else(|| panic!("{label} shows no number"))
}

/// Whether a widget shows the text `value`.
fn shows(harness: &Harness<'_, ExplorerApp>, value: &str) -> bool {
    harness.query_all_by_value(value).next().is_some()
}

/// Whether a check box is ticked.
fn ticked(harness: &Harness<'_, ExplorerApp>, label: &str) -> bool {
    harness
        .get_by_role_and_label(Role::CheckBox, label)
        .accesskit_node()
        .toggled()
        .is_some_and(|t| t == egui::accesskit::Toggled::True)
}

/// Checks that the widgets of every tab show `storage`'s values, except the grid and the
/// noise, which the caller checks.
fn shows_the_stored_controls(harness: &mut Harness<'_, ExplorerApp>) {
    assert_eq!(harness.state().tab(), Tab::Navigator);
    assert_eq!(harness.state().settings().prompt, "a dress");
    assert!(!harness.state().navigator().gpu_field(), "no wgpu here");
    assert!(shows(harness, "a sandal"));
    assert!(shows(harness, "a bag"));
    assert!(ticked(harness, "Island"));
    assert_eq!(harness.state().navigator().view().centre, [0.5, -0.25]);
    assert_eq!(harness.state().navigator().view().half_extent, 0.5);

    harness.get_by_label("Line").click();
    harness.step();
    assert_eq!(harness.state().navigator().controls().mode, Mode::Line);
    assert!(shows(harness, "a shirt"));
    assert!(shows(harness, "a coat"));
    assert_eq!(number(harness, Role::SpinButton, "points"), 5.0);
    assert!(ticked(harness, "slerp"));

    harness.get_by_label("Random gallery").click();
    harness.step();
    assert_eq!(number(harness, Role::SpinButton, "count"), 9.0);
    assert_eq!(number(harness, Role::SpinButton, "first seed"), 40.0);
    harness.get_by_label("Plane").click();
    harness.step();

    harness.get_by_label("Alien minds").click();
    harness.step();
    assert_eq!(number(harness, Role::Slider, "scale %"), 80.0);
    assert!(shows(harness, "attn"));
    let minds = harness.state().minds();
    assert_eq!(minds.controls().progressive_seed, 6);
    assert_eq!(minds.controls().global_component, Component::Unet);
    assert!(
        minds.controls().ticks().is_empty(),
        "ticks are not remembered"
    );
    let settings = minds.settings();
    assert_eq!(settings.tree.brush.kind, EditKind::Randomize);
    assert_eq!(settings.sequence.slider, Slider::Scale);
    assert_eq!(settings.sequence.count, 5);
    harness.get_by_label("Navigator").click();
    harness.step();
}

#[test]
fn controls_are_restored_changed_saved_and_restored_again() {
    let mut harness = restored(&stored());
    assert_eq!(number(&harness, Role::SpinButton, "grid"), 7.0);
    shows_the_stored_controls(&mut harness);

    // A change through the widgets, then eframe's save.
    harness
        .get_by_role_and_label(Role::SpinButton, "grid")
        .set_value_accesskit(11.0);
    harness.step();
    harness.get_by_label("Alien minds").click();
    harness.step();
    assert_eq!(number(&harness, Role::Slider, "noise %"), 12.5);
    harness
        .get_by_role_and_label(Role::Slider, "noise %")
        .set_value_accesskit(30.0);
    harness.step();
    harness.get_by_label("Navigator").click();
    harness.step();
    let mut saved = MemoryStorage::default();
    eframe::App::save(harness.state_mut(), &mut saved);
    // The edits the sliders make hold for the next picture.
    assert!(!harness.state().minds().edits().is_empty());
    drop(harness);

    let mut again = restored(&saved);
    assert_eq!(number(&again, Role::SpinButton, "grid"), 11.0);
    shows_the_stored_controls(&mut again);
    again.get_by_label("Alien minds").click();
    again.step();
    assert_eq!(number(&again, Role::Slider, "noise %"), 30.0);

    // A stored progressive count larger than the model's modules is cut to fit once it loads.
    let mut huge = stored();
    let minds = MindsSettings {
        progressive_count: 1_000_000,
        ..MindsSettings::default()
    };
    eframe::set_value(&mut huge, MINDS_KEY, &minds);
    let harness = restored(&huge);
    let count = harness.state().minds().controls().progressive_count;
    assert!(count > 0 && count < 1_000_000, "{count}");
}
