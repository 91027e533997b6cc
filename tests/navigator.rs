//! The navigator end to end on the embedded model: `plane`, `line` and `sample` write mosaics
//! whose tiles equal the pictures their recipes make alone, tiles replay through the binary, a
//! picture made in a batch equals the picture made alone, and bad input is one line of error.

use std::path::Path;
use std::process::{Command, Output};

use candle_core::Device;
use interconcept::engine::model::{DiffusionModel, embedded_model_dir};
use interconcept::engine::pipeline::SamplingParams;
use interconcept::engine::scheduler::SamplerKind;
use interconcept::engine::space::{self, Resolver};
use interconcept::mosaic::{MosaicRecord, tile_pixels};
use interconcept::navigator::{TileCache, render_recipe, render_recipes};
use interconcept::recipe::{self, Recipe};

/// Runs the program with logging muted to errors, so stderr holds only what it reports.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interconcept"))
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn model() -> DiffusionModel {
    DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).expect("the embedded model loads")
}

/// Asserts two pictures are equal without printing thousands of bytes when they are not.
fn assert_same(a: &[u8], b: &[u8], what: &str) {
    let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
    assert!(
        a.len() == b.len() && differing == 0,
        "{what}: {differing} of {} bytes differ (lengths {} and {})",
        a.len(),
        a.len(),
        b.len()
    );
}

fn png_pixels(path: &Path) -> Vec<u8> {
    recipe::read_png_rgb(path)
        .expect("a PNG the program wrote")
        .2
}

/// Checks every tile of a mosaic against its recipe made alone through the library; returns
/// the record and the mosaic's pixels.
fn check_tiles(model: &DiffusionModel, path: &Path) -> (MosaicRecord, usize, Vec<u8>) {
    let json = recipe::read_png_json(path).expect("a mosaic holds its record");
    let record = MosaicRecord::from_json(&json).expect("the record parses");
    let (width, _, rgb) = recipe::read_png_rgb(path).expect("a PNG the program wrote");
    for tile in &record.tiles {
        assert_eq!(tile.recipe.model, model.id);
        let alone = render_recipe(model, &tile.recipe).expect("the tile's recipe renders");
        let what = format!("tile {},{} of {}", tile.row, tile.column, path.display());
        assert_same(
            &tile_pixels(&rgb, width, tile, record.zoom),
            &alone.rgb,
            &what,
        );
    }
    (record, width, rgb)
}

#[test]
fn plane_tiles_replay_and_the_centre_is_the_prompt() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let common = ["--steps", "3", "--seed", "1"];

    let mut args = vec![
        "plane",
        "--prompt",
        "a sneaker",
        "--grid",
        "3",
        "--span",
        "1.5",
    ];
    args.extend(common);
    let (out, tiles) = (d("plane.png"), d("tiles"));
    args.extend(["--zoom", "2", "--out", &out, "--tile-recipes", &tiles]);
    ok(&args);
    let (record, width, rgb) = check_tiles(&model, Path::new(&out));
    assert_eq!((record.rows, record.columns, record.tiles.len()), (3, 3, 9));
    assert_eq!(record.column_labels, ["-1.5", "0", "1.5"]);
    assert_eq!(record.row_labels, ["1.5", "0", "-1.5"]);

    // The middle of the plane is the prompt's own picture.
    let single = d("single.png");
    ok(&[
        "generate",
        "--prompt",
        "a sneaker",
        "--steps",
        "3",
        "--seed",
        "1",
        "--out",
        &single,
    ]);
    let centre = record.tile("1,1").unwrap();
    let centre_pixels = tile_pixels(&rgb, width, centre, 2);
    assert_same(&centre_pixels, &png_pixels(Path::new(&single)), "centre");

    // A tile replays from the mosaic and from its JSON file, byte for byte.
    let (from_png, from_json) = (d("t1.png"), d("t2.png"));
    ok(&["replay", &out, "--tile", "0,2", "--out", &from_png]);
    let corner = record.tile("0,2").unwrap();
    let corner_pixels = tile_pixels(&rgb, width, corner, 2);
    assert_same(
        &png_pixels(Path::new(&from_png)),
        &corner_pixels,
        "replay --tile",
    );
    ok(&[
        "replay",
        &format!("{tiles}/tile-2-0.json"),
        "--out",
        &from_json,
    ]);
    let other = record.tile("2,0").unwrap();
    let other_pixels = tile_pixels(&rgb, width, other, 2);
    assert_same(
        &png_pixels(Path::new(&from_json)),
        &other_pixels,
        "replay tile json",
    );
}

#[test]
fn planes_toward_prompts_and_through_noise_match_their_recipes() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let toward = dir.path().join("toward.png");
    ok(&[
        "plane",
        "--prompt",
        "a sneaker",
        "--toward",
        "a sandal",
        "--toward",
        "a bag",
        "--grid",
        "2",
        "--steps",
        "3",
        "--out",
        toward.to_str().unwrap(),
    ]);
    check_tiles(&model, &toward);

    let noise = dir.path().join("noise.png");
    ok(&[
        "plane",
        "--prompt",
        "a bag",
        "--noise-plane",
        "--grid",
        "3",
        "--steps",
        "3",
        "--seed",
        "5",
        "--scheduler",
        "euler_ancestral",
        "--out",
        noise.to_str().unwrap(),
    ]);
    let (record, width, rgb) = check_tiles(&model, &noise);
    let single = dir.path().join("single.png");
    ok(&[
        "generate",
        "--prompt",
        "a bag",
        "--steps",
        "3",
        "--seed",
        "5",
        "--scheduler",
        "euler_ancestral",
        "--out",
        single.to_str().unwrap(),
    ]);
    let centre = record.tile("4").unwrap();
    assert_same(
        &tile_pixels(&rgb, width, centre, 1),
        &png_pixels(&single),
        "noise centre",
    );
}

#[test]
fn line_tiles_match_and_its_ends_are_the_prompts() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    for slerp in [false, true] {
        let out = dir.path().join(format!("line-{slerp}.png"));
        let mut args = vec![
            "line",
            "--from",
            "a sandal",
            "--to",
            "a sneaker",
            "--points",
            "5",
            "--beyond",
            "0.5",
            "--steps",
            "3",
            "--seed",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        if slerp {
            args.push("--slerp");
        }
        ok(&args);
        let (record, width, rgb) = check_tiles(&model, &out);
        let labels: Vec<&str> = record.tiles.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["-0.5", "0", "0.5", "1", "1.5"]);
        for (index, prompt) in [(1, "a sandal"), (3, "a sneaker")] {
            let single = dir.path().join(format!("{index}.png"));
            ok(&[
                "generate",
                "--prompt",
                prompt,
                "--steps",
                "3",
                "--seed",
                "2",
                "--out",
                single.to_str().unwrap(),
            ]);
            let tile = &record.tiles[index];
            assert_same(
                &tile_pixels(&rgb, width, tile, 1),
                &png_pixels(&single),
                prompt,
            );
        }
    }
}

#[test]
fn sample_tiles_match_and_each_is_reproducible_from_its_seed() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sample.png");
    ok(&[
        "sample",
        "--count",
        "3",
        "--seed",
        "3",
        "--steps",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (record, width, rgb) = check_tiles(&model, &out);
    let labels: Vec<&str> = record.tiles.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(labels, ["3", "4", "5"]);

    let alone = dir.path().join("alone.png");
    ok(&[
        "sample",
        "--count",
        "1",
        "--seed",
        "4",
        "--steps",
        "3",
        "--out",
        alone.to_str().unwrap(),
        "--labels",
        "none",
    ]);
    let (one, one_width, one_rgb) = check_tiles(&model, &alone);
    assert_same(
        &tile_pixels(&one_rgb, one_width, &one.tiles[0], 1),
        &tile_pixels(&rgb, width, &record.tiles[1], 1),
        "seed 4",
    );
}

#[test]
fn a_picture_made_in_a_batch_equals_the_picture_made_alone() {
    let model = model();
    let mut resolver = Resolver::new();
    let prompts = ["a sneaker", "a red bag", "", "an ankle boot", "a sneaker"];
    let points: Vec<_> = prompts
        .iter()
        .map(|p| resolver.prompt(&model, p).unwrap())
        .collect();
    let seeds = [1, 2, 3, 4, 9];
    for sampler in [SamplerKind::Ddim, SamplerKind::EulerAncestral] {
        let params = SamplingParams {
            num_steps: 4,
            guidance_scale: 4.0,
            sampler,
            width: model.default_size,
            height: model.default_size,
        };
        let mut seen = Vec::new();
        let batched = space::render_points(&model, &points, &seeds, &params, 3, &mut |i, _| {
            seen.push(i);
            true
        })
        .unwrap();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        for (i, picture) in batched.iter().enumerate() {
            let alone = space::render_points(
                &model,
                &points[i..=i],
                &seeds[i..=i],
                &params,
                1,
                &mut |_, _| true,
            )
            .unwrap();
            assert_same(
                &picture.rgb,
                &alone[0].rgb,
                &format!("{sampler:?}, picture {i}"),
            );
        }
    }
    assert_eq!(
        space::default_batch_size(
            &model,
            &SamplingParams {
                num_steps: 1,
                guidance_scale: 1.0,
                sampler: SamplerKind::Ddim,
                width: model.default_size,
                height: model.default_size,
            }
        ),
        64
    );
}

#[test]
fn repeated_recipes_come_from_the_cache() {
    let mut model = model();
    let params = SamplingParams {
        num_steps: 2,
        guidance_scale: 4.0,
        sampler: SamplerKind::Ddim,
        width: model.default_size,
        height: model.default_size,
    };
    let a = Recipe::for_prompt(model.id.clone(), "a coat", 1, params.clone());
    let b = Recipe::for_prompt(model.id.clone(), "a dress", 2, params);
    let mut cache = TileCache::default();
    let mut resolver = Resolver::new();
    let mut applied = Vec::new();
    let first = render_recipes(
        &mut model,
        &mut applied,
        &mut resolver,
        &mut cache,
        &[a.clone(), b.clone(), a.clone()],
        64,
        &mut |_, _| true,
    )
    .unwrap();
    assert_same(&first[0].rgb, &first[2].rgb, "repeated recipe");
    assert_eq!((cache.len(), cache.hits()), (2, 0));
    let mut calls = 0;
    let again = render_recipes(
        &mut model,
        &mut applied,
        &mut resolver,
        &mut cache,
        &[b, a],
        64,
        &mut |_, _| {
            calls += 1;
            true
        },
    )
    .unwrap();
    assert_eq!((cache.hits(), calls), (2, 2));
    assert_same(&again[1].rgb, &first[0].rgb, "cached picture");
}

#[test]
fn bad_input_is_one_line_of_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let out = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["plane", "--grid", "0", "--out", out], "--grid"),
        (vec!["plane", "--grid", "1000", "--out", out], "--grid"),
        (vec!["plane", "--steps", "0", "--out", out], "steps"),
        (vec!["plane", "--span", "nan", "--out", out], "--span"),
        (vec!["plane", "--toward", "a bag", "--out", out], "--toward"),
        (
            vec![
                "line", "--from", "a", "--to", "b", "--points", "1", "--out", out,
            ],
            "--points",
        ),
        (
            vec![
                "line", "--from", "a", "--to", "b", "--steps", "0", "--out", out,
            ],
            "steps",
        ),
        (vec!["sample", "--count", "0", "--out", out], "--count"),
        (vec!["sample", "--zoom", "0", "--out", out], "--zoom"),
        (
            vec!["plane", "--grid", "64", "--zoom", "16", "--out", out],
            "pixels",
        ),
        (
            vec!["sample", "--out", "/nonexistent/dir/x.png"],
            "does not exist",
        ),
    ];
    for (args, needle) in cases {
        let result = run(&args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(!Path::new(out).exists());
}

#[test]
fn tiles_with_different_edits_match_single_pictures_with_those_edits() {
    use interconcept::engine::surgery::{WeightEdit, apply_edits};
    let mut model = model();
    let params = SamplingParams {
        num_steps: 2,
        guidance_scale: 4.0,
        sampler: SamplerKind::Ddim,
        width: model.default_size,
        height: model.default_size,
    };
    let plain = Recipe::for_prompt(model.id.clone(), "a bag", 5, params.clone());
    let knocked = Recipe {
        edits: vec![WeightEdit::Knockout {
            component: interconcept::engine::model::Component::Unet,
            module: "mid_block.resnets.0.conv1".into(),
        }],
        ..plain.clone()
    };
    let noisy = Recipe {
        edits: vec![WeightEdit::MixNoise {
            percent: 30.0,
            seed: 2,
            components: vec![interconcept::engine::model::Component::TextEncoder],
        }],
        ..plain.clone()
    };
    let recipes = [plain.clone(), knocked.clone(), noisy.clone(), plain.clone()];
    let mut applied = Vec::new();
    let tiles = render_recipes(
        &mut model,
        &mut applied,
        &mut Resolver::new(),
        &mut TileCache::default(),
        &recipes,
        64,
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(applied, noisy.edits, "the last group's edits are held");

    for (recipe, tile) in recipes.iter().zip(&tiles) {
        apply_edits(&mut model, &recipe.edits).unwrap();
        let alone = render_recipe(&model, recipe).unwrap();
        assert_same(&alone.rgb, &tile.rgb, &format!("edits {:?}", recipe.edits));
    }
    assert_ne!(tiles[0].rgb, tiles[1].rgb, "a knockout changes the picture");
    assert_ne!(
        tiles[0].rgb, tiles[2].rgb,
        "text-encoder noise changes the picture"
    );
}
