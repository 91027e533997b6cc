//! The explorer window driven through egui_kittest, over a real worker on the embedded model:
//! a prompt typed and generated until the finished picture is on screen, and a failing job
//! whose error shows while the app keeps working.
//!
//! The snapshot renders with wgpu; on a machine without a GPU, wgpu falls back to a software
//! adapter (lavapipe / llvmpipe on Linux, WARP on Windows).

mod gui_support;

use std::time::Duration;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gui_support::app_over_embedded_model;
use interconcept::engine::model::embedded_model_dir;
use interconcept::engine::scheduler::SamplerKind;
use interconcept::gui::jobs::Status;
use interconcept::gui::picture_view::{Shown, ShownKind};
use interconcept::gui::{ExplorerApp, GenerateSettings};

/// The longest a test waits for the worker.
const WAIT: Duration = Duration::from_secs(30);

/// The window size of the tests and of the snapshot.
const WINDOW: egui::Vec2 = egui::vec2(900.0, 620.0);

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

fn wait_for_model(harness: &mut Harness<'_, ExplorerApp>) {
    step_until(harness, "the model to load", |app| !app.is_busy());
    assert_eq!(
        harness.state().status(),
        &Status::Ready,
        "the embedded model should load from {}",
        embedded_model_dir().display()
    );
}

#[test]
fn generate_streams_into_one_picture_and_shows_the_finished_one() {
    let settings = GenerateSettings {
        seed: 42,
        num_steps: 6,
        ..GenerateSettings::default()
    };
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .wgpu()
        .build_eframe(|cc| app_over_embedded_model(cc, settings));
    wait_for_model(&mut harness);
    let [width, height] = harness
        .state()
        .settings()
        .size
        .expect("the size follows the loaded model");

    let textures_before = harness.ctx.tex_manager().read().num_allocated();

    // Type a prompt, then press Generate.
    harness.get_by_label("Prompt").focus();
    harness.step();
    harness.get_by_label("Prompt").type_text("a sneaker");
    harness.step();
    assert_eq!(harness.state().settings().prompt, "a sneaker");
    harness.get_by_label("Generate").click();
    harness.step();
    assert!(harness.state().is_busy(), "Generate should start a job");

    step_until(&mut harness, "the picture", |app| !app.is_busy());
    let app = harness.state();
    assert!(
        matches!(app.status(), Status::Done { .. }),
        "status: {}",
        app.status_text()
    );
    let picture = app.last_picture().expect("a finished picture");
    assert_eq!((picture.width, picture.height), (width, height));
    assert_eq!(
        app.shown(),
        Some(Shown {
            kind: ShownKind::Finished,
            size: [width, height]
        }),
        "the texture should hold the finished picture, not a preview"
    );
    let textures_after = harness.ctx.tex_manager().read().num_allocated();
    assert!(
        textures_after <= textures_before + 1,
        "previews must update one texture, not allocate one each: {textures_before} -> {textures_after}"
    );
    let recipe = app.last_recipe().expect("a recipe");
    assert_eq!(recipe.prompt, "a sneaker");
    assert_eq!(recipe.seed, 42);
    assert_eq!(recipe.sampling.num_steps, 6);

    // The elapsed time differs between runs, in value and in width: keep the rest of the status
    // line out of the snapshot, and the mouse pointer too.
    harness.remove_cursor();
    harness.step();
    let elapsed = harness.get_by_label_contains("done in").rect();
    harness.mask(egui::Rect::from_min_max(
        elapsed.min,
        egui::pos2(WINDOW.x, elapsed.max.y),
    ));
    harness.snapshot("generate");
}

#[test]
fn a_failed_job_shows_its_error_and_the_app_keeps_working() {
    // Zero steps, as an edited settings file might hold: the worker rejects the request.
    let settings = GenerateSettings {
        prompt: "a bag".into(),
        num_steps: 0,
        ..GenerateSettings::default()
    };
    let mut harness = Harness::builder()
        .with_size(WINDOW)
        .build_eframe(|cc| app_over_embedded_model(cc, settings));
    wait_for_model(&mut harness);

    harness.get_by_label("Generate").click();
    harness.step();
    step_until(&mut harness, "the failure", |app| !app.is_busy());
    let status = harness.state().status().clone();
    assert!(
        matches!(&status, Status::Failed(error) if error.contains("steps")),
        "expected a steps error, got {status:?}"
    );
    let error_line = harness.get_by_label_contains("error: ");
    let error_text = error_line.value().unwrap_or_default();
    assert!(error_text.contains("steps"), "status line: {error_text}");
    assert!(harness.state().last_picture().is_none());

    // Fix the steps; Enter in the prompt generates, and this time a picture comes.
    harness.state_mut().settings_mut().num_steps = 2;
    harness.get_by_label("Prompt").focus();
    harness.step();
    harness.key_press(egui::Key::Enter);
    harness.step();
    assert!(
        harness.state().is_busy(),
        "Enter in the prompt should start a job"
    );
    step_until(&mut harness, "the picture", |app| !app.is_busy());
    assert!(
        matches!(harness.state().status(), Status::Done { .. }),
        "status: {}",
        harness.state().status_text()
    );
    assert!(harness.state().last_picture().is_some());
    assert!(harness.query_by_label_contains("error: ").is_none());
}

/// eframe's storage, in memory.
#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

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

#[test]
fn settings_survive_a_restart() {
    let mut storage = MemoryStorage::default();
    let chosen = GenerateSettings {
        prompt: "a coat".into(),
        seed: 9,
        num_steps: 12,
        guidance_scale: 3.5,
        sampler: SamplerKind::EulerAncestral,
        ..GenerateSettings::default()
    };
    let saved = {
        let mut harness = Harness::builder()
            .with_size(WINDOW)
            .build_eframe(|cc| app_over_embedded_model(cc, chosen.clone()));
        wait_for_model(&mut harness);
        eframe::App::save(harness.state_mut(), &mut storage);
        harness.state().settings().clone()
    };
    assert!(saved.size.is_some(), "the size followed the model");

    // A new window reads them back before its model has loaded.
    let harness = Harness::builder().with_size(WINDOW).build_eframe(|cc| {
        cc.storage = Some(&storage);
        ExplorerApp::new(cc, embedded_model_dir())
    });
    assert_eq!(harness.state().settings(), &saved);
    assert_eq!(saved.prompt, chosen.prompt);
    assert_eq!(saved.sampler, chosen.sampler);
}
