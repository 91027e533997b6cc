//! Recipes and exports in the window, driven through egui_kittest over a real worker on the
//! embedded model: a PNG the program saved, dropped on the window, restores every setting and
//! makes the same bytes again; a recipe for another model is refused and changes nothing;
//! pasted JSON restores too; a mosaic dropped is recognised and its tiles offered; a save never
//! replaces a file without asking; a failed save is a notice and the app keeps working.

mod gui_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use interconcept::engine::scheduler::SamplerKind;
use interconcept::gui::jobs::Status;
use interconcept::gui::{ExplorerApp, GenerateSettings};
use interconcept::mosaic::{Mosaic, MosaicRecord, MosaicStyle, MosaicTile};
use interconcept::recipe::{self, Recipe};

/// The longest a test waits for the worker or a write.
const WAIT: Duration = Duration::from_secs(60);

/// A file dropped on the window, as the integration hands it to egui.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn harness(settings: GenerateSettings) -> Harness<'static, ExplorerApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 620.0))
        .build_eframe(move |cc| gui_support::app_over_embedded_model(cc, settings));
    step_until(&mut harness, "the model to load", |app| !app.is_busy());
    assert_eq!(harness.state().status(), &Status::Ready);
    harness
}

/// Steps the harness until `done` holds; fails after [`WAIT`].
fn step_until(
    harness: &mut Harness<'_, ExplorerApp>,
    what: &str,
    done: impl Fn(&ExplorerApp) -> bool,
) {
    gui_support::step_until(harness, what, WAIT, done, |app| {
        format!("status: {}; notice: {:?}", app.status_text(), app.notice())
    });
}

fn drop_file(harness: &mut Harness<'_, ExplorerApp>, path: &Path) {
    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_path_buf())));
    harness.step();
}

fn notice_text(app: &ExplorerApp) -> String {
    app.notice().map(|n| n.text.clone()).unwrap_or_default()
}

/// Makes a picture with `settings` and saves it through the app to `path`.
fn make_and_save(harness: &mut Harness<'_, ExplorerApp>, path: &Path) -> (Vec<u8>, Recipe) {
    harness.state_mut().generate();
    harness.step();
    step_until(harness, "the picture", |app| !app.is_busy());
    let ctx = harness.ctx.clone();
    harness
        .state_mut()
        .save_picture_to(&ctx, path.to_path_buf());
    step_until(harness, "the save", |app| {
        notice_text(app).starts_with("saved")
    });
    let app = harness.state();
    let picture = app.last_picture().expect("a finished picture").rgb.clone();
    (picture, app.last_recipe().expect("its recipe").clone())
}

fn settings() -> GenerateSettings {
    GenerateSettings {
        prompt: "a red bag".into(),
        seed: 42,
        num_steps: 3,
        guidance_scale: 3.0,
        sampler: SamplerKind::EulerAncestral,
        ..GenerateSettings::default()
    }
}

#[test]
fn a_dropped_png_restores_its_settings_and_makes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("made.png");
    let mut harness = harness(settings());
    let (picture, recipe) = make_and_save(&mut harness, &png);
    let restored_settings = harness.state().settings().clone();
    assert_eq!(recipe::read_png_rgb(&png).unwrap().2, picture);

    // Change everything, then drop the PNG.
    *harness.state_mut().settings_mut() = GenerateSettings {
        size: restored_settings.size,
        size_model: restored_settings.size_model.clone(),
        num_steps: 2,
        ..GenerateSettings::default()
    };
    drop_file(&mut harness, &png);
    assert_eq!(
        harness.state().settings(),
        &restored_settings,
        "prompt, seed, steps, guidance, sampler and size come back"
    );
    assert!(harness.state().is_busy(), "the picture is made again");
    step_until(&mut harness, "the picture again", |app| !app.is_busy());
    let app = harness.state();
    assert!(
        matches!(app.status(), Status::Done { .. }),
        "{}",
        app.status_text()
    );
    assert_eq!(app.last_recipe(), Some(&recipe));
    let again = &app.last_picture().expect("a picture").rgb;
    assert!(again == &picture, "the same bytes again");

    // Pasting the recipe JSON outside any text field does the same.
    *harness.state_mut().settings_mut() = GenerateSettings {
        size: restored_settings.size,
        ..GenerateSettings::default()
    };
    harness
        .input_mut()
        .events
        .push(egui::Event::Paste(recipe.to_json()));
    harness.step();
    assert_eq!(harness.state().settings(), &restored_settings);
    step_until(&mut harness, "the pasted recipe's picture", |app| {
        !app.is_busy()
    });
    assert!(harness.state().last_picture().expect("a picture").rgb == picture);
}

#[test]
fn a_recipe_for_another_model_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness(settings());
    let before = harness.state().settings().clone();
    let mut recipe = Recipe::for_prompt(
        interconcept::engine::model::ModelId {
            name: "sd-turbo".into(),
            weights_hash: "00000000000000000000000000000000".into(),
            variant: None,
        },
        "a shoe",
        7,
        harness
            .state()
            .settings()
            .to_job()
            .expect("the size is known")
            .params,
    );
    recipe.seed = 9;
    let path = dir.path().join("other.json");
    std::fs::write(&path, recipe.to_json()).unwrap();
    drop_file(&mut harness, &path);

    let app = harness.state();
    let notice = app.notice().expect("a message");
    assert!(notice.is_error, "{notice:?}");
    assert!(
        notice
            .text
            .contains("needs model sd-turbo (weights 00000000000000000000000000000000)"),
        "{}",
        notice.text
    );
    assert_eq!(app.settings(), &before, "nothing changed");
    assert!(!app.is_busy(), "no picture started");
    assert!(app.last_picture().is_none());
    harness.get_by_label_contains("needs model sd-turbo");

    // A file that is not a recipe, and a recipe from a newer build, are messages too.
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    drop_file(&mut harness, &junk);
    assert!(notice_text(harness.state()).starts_with("cannot open junk.png"));
    let newer = dir.path().join("newer.json");
    std::fs::write(&newer, r#"{"version": 2, "everything": "else"}"#).unwrap();
    drop_file(&mut harness, &newer);
    assert!(
        notice_text(harness.state()).contains("version 2 is newer"),
        "{}",
        notice_text(harness.state())
    );
    assert_eq!(harness.state().settings(), &before);
}

#[test]
fn saving_over_a_file_asks_first_and_a_failed_save_is_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness(GenerateSettings {
        num_steps: 2,
        ..settings()
    });
    let first = dir.path().join("first.png");
    let (picture, recipe) = make_and_save(&mut harness, &first);

    // A file is there: the app asks, and Cancel keeps it.
    let kept = dir.path().join("kept.png");
    std::fs::write(&kept, b"precious").unwrap();
    let ctx = harness.ctx.clone();
    harness.state_mut().save_picture_to(&ctx, kept.clone());
    // A new window is sized on its first frame and shown on the next.
    harness.step();
    harness.step();
    assert_eq!(harness.state().replace_pending(), Some(kept.as_path()));
    harness.get_by_label("Replace kept.png?");
    harness.get_by_label("Cancel").click();
    harness.step();
    harness.step();
    assert_eq!(harness.state().replace_pending(), None);
    assert_eq!(std::fs::read(&kept).unwrap(), b"precious");

    // Replace writes it.
    harness.state_mut().save_picture_to(&ctx, kept.clone());
    harness.step();
    harness.step();
    harness.get_by_label("Replace").click();
    let saved = format!("saved {}", kept.display());
    step_until(&mut harness, "the replacing save", |app| {
        notice_text(app) == saved
    });
    assert_eq!(recipe::read_png_rgb(&kept).unwrap().2, picture);
    let json = recipe::read_png_json(&kept).unwrap();
    assert_eq!(Recipe::from_json(&json).unwrap(), recipe);

    // A folder that cannot be written (here a file stands where the folder should be, which
    // fails even for root) is a notice; nothing is left behind and the app keeps working.
    let blocked = dir.path().join("first.png").join("x.png");
    harness.state_mut().save_picture_to(&ctx, blocked);
    step_until(&mut harness, "the failed save", |app| {
        app.notice().is_some_and(|n| n.is_error)
    });
    assert!(
        notice_text(harness.state()).starts_with("picture not saved: cannot write"),
        "{}",
        notice_text(harness.state())
    );
    harness.state_mut().generate();
    harness.step();
    step_until(&mut harness, "a picture after the failure", |app| {
        !app.is_busy()
    });
    assert!(matches!(harness.state().status(), Status::Done { .. }));
}

#[test]
fn a_mosaic_exports_asks_before_replacing_and_offers_its_tiles_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness(GenerateSettings {
        num_steps: 2,
        ..settings()
    });
    let (picture, recipe) = make_and_save(&mut harness, &dir.path().join("p.png"));
    let finished = harness.state().last_picture().unwrap().clone();
    let tile = |label: &str, seed: u64| MosaicTile {
        picture: finished.clone(),
        label: label.into(),
        recipe: Recipe {
            seed,
            ..recipe.clone()
        },
    };
    let mosaic = Mosaic {
        title: "two tiles".into(),
        columns: 2,
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        // The second tile's recipe is the picture's own.
        tiles: vec![tile("other", 1), tile("mine", recipe.seed)],
        style: MosaicStyle::default(),
    };
    let path = dir.path().join("grid.png");
    let ctx = harness.ctx.clone();
    harness
        .state_mut()
        .export_mosaic_to(&ctx, mosaic.clone(), path.clone());
    let saved = format!("saved {}", path.display());
    step_until(&mut harness, "the export", |app| notice_text(app) == saved);
    let record = MosaicRecord::from_json(&recipe::read_png_json(&path).unwrap()).unwrap();
    assert_eq!(record.tiles.len(), 2);
    assert_eq!(record.tiles[1].recipe, recipe);

    // Again to the same path: asked first.
    let before = std::fs::read(&path).unwrap();
    harness
        .state_mut()
        .export_mosaic_to(&ctx, mosaic, path.clone());
    harness.step();
    harness.step();
    assert_eq!(harness.state().replace_pending(), Some(path.as_path()));
    harness.get_by_label("Cancel").click();
    harness.step();
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Dropped, it is named a mosaic and its tiles are offered; one makes its picture again.
    *harness.state_mut().settings_mut() = GenerateSettings {
        size: harness.state().settings().size,
        ..GenerateSettings::default()
    };
    drop_file(&mut harness, &path);
    assert!(
        notice_text(harness.state()).contains("grid.png is a mosaic of 2 tiles"),
        "{}",
        notice_text(harness.state())
    );
    assert!(harness.state().opened_mosaic().is_some());
    assert!(
        !harness.state().is_busy(),
        "no picture until a tile is chosen"
    );
    harness.step();
    harness.get_by_label_contains("0,1").click();
    harness.step();
    step_until(&mut harness, "the tile's picture", |app| !app.is_busy());
    let app = harness.state();
    assert_eq!(app.last_recipe(), Some(&recipe));
    assert!(app.last_picture().unwrap().rgb == picture);
}
