//! Sharded grids through the binary: shards 1/3, 2/3 and 3/3 merged give exactly the mosaic
//! (pixels and tile recipes) of the unsharded command, a shard run again keeps its tiles and
//! remakes a damaged one, a missing tile is named, and bad `--shard` values are one line.

use std::path::Path;
use std::process::{Command, Output};

use interconcept::mosaic::MosaicRecord;
use interconcept::recipe;
use interconcept::shard::{LAYOUT_FILE, ShardLayout};

/// Runs the program with logging muted to errors and one CPU thread.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interconcept"))
        .env("RUST_LOG", "error")
        .env("CANDLE_NUM_THREADS", "1")
        .args(args)
        .output()
        .expect("the binary runs")
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn one_error_line(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    stderr.trim().to_string()
}

fn mosaic(path: &Path) -> (Vec<u8>, MosaicRecord) {
    let (_, _, rgb) = recipe::read_png_rgb(path).expect("a PNG the program wrote");
    let json = recipe::read_png_json(path).expect("a mosaic holds its record");
    (
        rgb,
        MosaicRecord::from_json(&json).expect("the record parses"),
    )
}

#[track_caller]
fn assert_same_mosaic(sharded: &Path, whole: &Path) {
    let (a_rgb, a_record) = mosaic(sharded);
    let (b_rgb, b_record) = mosaic(whole);
    assert_eq!(a_record, b_record, "records (title, labels, tile recipes)");
    let differing = a_rgb.iter().zip(&b_rgb).filter(|(a, b)| a != b).count();
    assert!(
        a_rgb.len() == b_rgb.len() && differing == 0,
        "{differing} of {} bytes differ",
        a_rgb.len()
    );
    assert_eq!(
        std::fs::read(sharded).expect("the merged mosaic"),
        std::fs::read(whole).expect("the unsharded mosaic"),
        "the merged PNG is the unsharded one, byte for byte"
    );
}

#[test]
fn three_shards_merge_into_the_unsharded_plane() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let grid = [
        "plane",
        "--prompt",
        "a red bag",
        "--grid",
        "3",
        "--span",
        "2",
        "--seed",
        "5",
        "--steps",
        "2",
        "--zoom",
        "2",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        grid.iter().chain(extra).map(|s| (*s).to_string()).collect()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    ok(&args(&with(&["--out", &p("whole.png")])));
    let tiles = p("tiles");
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let stdout = ok(&args(&with(&["--shard", &shard, "--out-dir", &tiles])));
        assert!(stdout.contains("3 made, 0 already there"), "{stdout}");
    }

    // Tile i belongs to shard i % 3 + 1: the layout names all nine, rows first.
    let layout = ShardLayout::from_json(
        &std::fs::read_to_string(Path::new(&tiles).join(LAYOUT_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(layout.tiles.len(), 9);
    assert_eq!(layout.tiles[5].file, "tile-1-2.png");

    ok(&["merge", &tiles, "--out", &p("merged.png")]);
    assert_same_mosaic(Path::new(&p("merged.png")), Path::new(&p("whole.png")));

    // A rerun skips what is there; a damaged tile or one of another recipe is made again.
    let stdout = ok(&args(&with(&["--shard", "2/3", "--out-dir", &tiles])));
    assert!(stdout.contains("0 made, 3 already there"), "{stdout}");
    let damaged = Path::new(&tiles).join("tile-0-1.png");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let other = Path::new(&tiles).join("tile-2-1.png");
    let (w, h, rgb) = recipe::read_png_rgb(&other).unwrap();
    let json = recipe::read_png_json(&other)
        .unwrap()
        .replace("\"seed\": 5", "\"seed\": 6");
    recipe::write_png_rgb(&other, w, h, &rgb, &json).unwrap();
    let stdout = ok(&args(&with(&["--shard", "2/3", "--out-dir", &tiles])));
    assert!(stdout.contains("2 made, 1 already there"), "{stdout}");
    ok(&["merge", &tiles, "--out", &p("merged-again.png")]);
    assert_same_mosaic(
        Path::new(&p("merged-again.png")),
        Path::new(&p("whole.png")),
    );

    // Another grid may not share the folder.
    let error = one_error_line(&[
        "plane",
        "--prompt",
        "a shoe",
        "--grid",
        "3",
        "--steps",
        "2",
        "--shard",
        "1/3",
        "--out-dir",
        &tiles,
    ]);
    assert!(error.contains("another grid"), "{error}");
}

#[test]
fn merge_names_the_missing_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let tiles = dir.path().join("tiles");
    let tiles = tiles.to_str().unwrap();
    let out = dir.path().join("m.png");
    let out = out.to_str().unwrap();
    let sample = |shard: &str| {
        ok(&[
            "sample",
            "--count",
            "5",
            "--columns",
            "3",
            "--steps",
            "2",
            "--shard",
            shard,
            "--out-dir",
            tiles,
        ]);
    };
    sample("1/2");
    let error = one_error_line(&["merge", tiles, "--out", out]);
    assert!(
        error.contains("2 of 5 tiles missing: tile-0-1.png, tile-1-0.png"),
        "{error}"
    );
    assert!(!Path::new(out).exists(), "nothing is written");

    sample("2/2");
    // Tile 4 (row 1, column 1) is shard 1's.
    std::fs::write(dir.path().join("tiles/tile-1-1.png"), b"not a png").unwrap();
    let error = one_error_line(&["merge", tiles, "--out", out]);
    assert!(
        error.contains("1 not made from the layout's recipe") && error.contains("tile-1-1.png"),
        "{error}"
    );
    sample("1/2");
    ok(&["merge", tiles, "--out", out]);
    let (_, record) = mosaic(Path::new(out));
    assert_eq!((record.tiles.len(), record.columns), (5, 3));

    let error = one_error_line(&["merge", dir.path().to_str().unwrap(), "--out", out]);
    assert!(error.contains(LAYOUT_FILE), "{error}");
}

#[test]
fn sharded_sweep_merges_into_the_unsharded_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let sweep = [
        "sweep",
        "--edit",
        "mix-noise",
        "--values",
        "0,40,80",
        "--prompt",
        "a bag",
        "--steps",
        "2",
    ];
    let (whole, whole_tiles) = (p("whole.png"), p("whole-tiles"));
    let mut args: Vec<&str> = sweep.to_vec();
    args.extend(["--out", &whole, "--out-dir", &whole_tiles]);
    ok(&args);
    let tiles = p("tiles");
    for shard in ["1/2", "2/2"] {
        let mut args: Vec<&str> = sweep.to_vec();
        args.extend(["--shard", shard, "--out-dir", &tiles]);
        ok(&args);
    }
    ok(&["merge", &tiles, "--out", &p("merged.png")]);
    assert_same_mosaic(Path::new(&p("merged.png")), Path::new(&whole));
}

#[test]
fn bad_shards_are_one_line_of_error() {
    let dir = tempfile::tempdir().unwrap();
    let tiles = dir.path().join("t");
    let tiles = tiles.to_str().unwrap();
    for bad in ["0/3", "4/3", "x", "1/0", "2/"] {
        let error = one_error_line(&["sample", "--shard", bad, "--out-dir", tiles]);
        assert!(error.contains("K/N"), "{bad}: {error}");
    }
    // --shard needs a folder, and writes no mosaic itself.
    let error = one_error_line(&["sample", "--shard", "1/2"]);
    assert!(error.contains("--out-dir"), "{error}");
    let error = one_error_line(&[
        "sample",
        "--shard",
        "1/2",
        "--out-dir",
        tiles,
        "--out",
        "x.png",
    ]);
    assert!(error.contains("--out"), "{error}");
    let error = one_error_line(&["sweep", "--edit", "knockout", "--shard", "3/2"]);
    assert!(error.contains("K/N"), "{error}");
}
