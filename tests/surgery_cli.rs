//! The alien-minds command line on the embedded model: edits given as flags land in the
//! recipe and `replay` makes the same file again, blown-up weights are recorded, bad module
//! names are one-line errors, and a sweep resumes without remaking its tiles and its mosaic
//! replays any tile.

use std::path::Path;
use std::process::{Command, Output};

use interconcept::engine::model::embedded_model_dir;
use interconcept::engine::surgery::WeightEdit;
use interconcept::recipe::{Recipe, read_png_json, read_png_rgb};

fn interconcept(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interconcept"))
        .current_dir(dir)
        .arg("--model")
        .arg(embedded_model_dir())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn recipe_of(path: &Path) -> Recipe {
    let json = read_png_json(path).expect("a recipe in the PNG");
    Recipe::from_json(&json).expect("a valid recipe")
}

#[test]
fn edit_flags_reach_the_recipe_and_replay_makes_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "generate",
        "--prompt",
        "a red sneaker",
        "--steps",
        "5",
        "--out",
        "edited.png",
        "--knockout",
        "conv_in",
        "--randomize",
        "mid_block",
        "--progressive",
        "12",
        "--order-seed",
        "1",
        "--mix-noise",
        "2",
        "--scale-all",
        "1.1",
    ];
    ok(&interconcept(dir.path(), &flags));
    let recipe = recipe_of(&dir.path().join("edited.png"));
    assert_eq!(recipe.edits.len(), 5);
    assert!(matches!(
        recipe.edits[2],
        WeightEdit::ProgressiveKnockout {
            count: 12,
            seed: 1,
            ..
        }
    ));

    ok(&interconcept(
        dir.path(),
        &["replay", "edited.png", "--out", "again.png"],
    ));
    let first = std::fs::read(dir.path().join("edited.png")).unwrap();
    let again = std::fs::read(dir.path().join("again.png")).unwrap();
    assert!(first == again, "replay made other bytes");

    // The same prompt and seed without edits is another picture.
    ok(&interconcept(
        dir.path(),
        &[
            "generate",
            "--prompt",
            "a red sneaker",
            "--steps",
            "5",
            "--out",
            "plain.png",
        ],
    ));
    assert!(std::fs::read(dir.path().join("plain.png")).unwrap() != first);
}

#[test]
fn blown_up_weights_are_recorded_and_bad_modules_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = interconcept(
        dir.path(),
        &[
            "generate",
            "--steps",
            "3",
            "--out",
            "nan.png",
            "--scale-all",
            "1e30",
        ],
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NaN or infinity"));
    assert!(recipe_of(&dir.path().join("nan.png")).non_finite);

    let out = interconcept(
        dir.path(),
        &["generate", "--out", "x.png", "--knockout", "no.such.module"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no module or group no.such.module in the unet"),
        "{err}"
    );
    assert!(!dir.path().join("x.png").exists());
}

#[test]
fn a_sweep_writes_tiles_and_a_grid_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = [
        "sweep",
        "--edit",
        "knockout",
        "--each",
        "module",
        "--filter",
        "time_embedding",
        "--prompt",
        "a bag",
        "--steps",
        "3",
        "--out",
        "sweep.png",
        "--out-dir",
        "tiles",
    ];
    let stdout = ok(&interconcept(dir.path(), &sweep));
    assert!(
        stdout.contains("3 tiles (3 made, 0 already there)"),
        "{stdout}"
    );
    let tiles = dir.path().join("tiles");
    let tile = tiles.join("0001-time_embedding.linear_1.png");
    let recipe = recipe_of(&tile);
    assert_eq!(recipe.edits.len(), 1);
    assert!(tiles.join("0000-original.png").is_file());
    assert!(tiles.join("sweep.json").is_file());

    // The mosaic (a strip of three tiles) replays any tile, edits included.
    ok(&interconcept(
        dir.path(),
        &["replay", "sweep.png", "--tile", "0,1", "--out", "tile.png"],
    ));
    assert_eq!(
        read_png_rgb(&dir.path().join("tile.png")).unwrap(),
        read_png_rgb(&tile).unwrap()
    );
    assert_eq!(recipe_of(&dir.path().join("tile.png")).edits, recipe.edits);

    // Rerun: nothing to make. Remove one tile: only that one is made again, identically.
    let before = std::fs::read(&tile).unwrap();
    let stdout = ok(&interconcept(dir.path(), &sweep));
    assert!(stdout.contains("(0 made, 3 already there)"), "{stdout}");
    std::fs::remove_file(&tile).unwrap();
    let stdout = ok(&interconcept(dir.path(), &sweep));
    assert!(stdout.contains("(1 made, 2 already there)"), "{stdout}");
    assert!(std::fs::read(&tile).unwrap() == before);

    // A strength sweep of the global edits.
    let stdout = ok(&interconcept(
        dir.path(),
        &[
            "sweep",
            "--edit",
            "mix-noise",
            "--values",
            "0:4:2",
            "--steps",
            "3",
            "--out",
            "noise.png",
        ],
    ));
    assert!(stdout.contains("3 tiles"), "{stdout}");
    assert!(
        dir.path()
            .join("noise-tiles/0002-noise_4___seed_0_.png")
            .is_file()
    );
}
