//! The command line as a user meets it: every bad input ends with one `error:` line and a
//! non-zero exit, never a panic; pictures carry their recipe and replay to the same pixels.

use std::path::Path;
use std::process::{Command, Output};

use interconcept::engine::model::embedded_model_dir;
use interconcept::recipe::{Recipe, read_png_json};

/// Runs the program with logging muted to errors, so stderr holds only what it reports.
fn interconcept(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interconcept"))
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .expect("the program starts")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Checks a failed run and returns its one error line.
#[track_caller]
fn expect_one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "exited with success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got {lines:#?}"
    );
    assert!(
        lines[0].starts_with("error:"),
        "{:?} does not start with error:",
        lines[0]
    );
    lines[0].to_string()
}

#[track_caller]
fn expect_success(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
}

/// The decoded pixels and the recipe of a PNG the program wrote.
fn read_picture(path: &Path) -> (Vec<u8>, Recipe) {
    let read = || -> anyhow::Result<(Vec<u8>, Recipe)> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut reader = png::Decoder::new(file).read_info()?;
        let mut pixels = vec![0; reader.output_buffer_size().unwrap_or_default()];
        let info = reader.next_frame(&mut pixels)?;
        pixels.truncate(info.buffer_size());
        Ok((pixels, Recipe::from_json(&read_png_json(path)?)?))
    };
    read().unwrap_or_else(|e| panic!("cannot read {}: {e:#}", path.display()))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[test]
fn a_missing_model_folder_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let output = interconcept(&[
        "--model",
        "/nonexistent",
        "generate",
        "--out",
        path_str(&out),
    ]);
    let line = expect_one_error_line(&output);
    assert!(line.contains("/nonexistent"), "{line}");
    assert!(!out.exists());
}

#[test]
fn a_corrupt_weight_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_dir(&embedded_model_dir(), &model).unwrap();
    let weights = model.join("unet/diffusion_pytorch_model.safetensors");
    std::fs::write(&weights, b"these are not the weights you are looking for").unwrap();

    let out = dir.path().join("x.png");
    let output = interconcept(&[
        "--model",
        path_str(&model),
        "generate",
        "--out",
        path_str(&out),
    ]);
    let line = expect_one_error_line(&output);
    assert!(
        line.contains(path_str(&weights)),
        "{line} does not name {}",
        weights.display()
    );
}

#[test]
fn an_unwritable_output_is_one_error_line() {
    let output = interconcept(&["generate", "--out", "/nonexistent-dir/x.png"]);
    let line = expect_one_error_line(&output);
    assert!(line.contains("/nonexistent-dir"), "{line}");
}

#[test]
fn bad_sampling_options_are_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let out = path_str(&out);
    let cases: [(&[&str], &str); 3] = [
        (&["--steps", "0"], "steps"),
        (&["--width", "100000"], "width"),
        (&["--height", "30"], "height"),
    ];
    for (options, named) in cases {
        let mut args = vec!["generate", "--prompt", "a bag", "--out", out];
        args.extend(options);
        let line = expect_one_error_line(&interconcept(&args));
        assert!(
            line.contains(named),
            "{options:?}: {line} does not name {named}"
        );
    }
    assert!(!Path::new(out).exists());
}

#[test]
fn an_unknown_scheduler_is_one_error_line() {
    // Refused while the command line is parsed, before any model is read.
    let output = interconcept(&["generate", "--scheduler", "nonsense", "--out", "x.png"]);
    let line = expect_one_error_line(&output);
    assert!(line.contains("nonsense") && line.contains("ddim"), "{line}");
}

#[test]
fn generate_writes_a_png_with_its_recipe_and_replay_reproduces_it() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("X.png");
    let prompt = "a red sneaker";
    let args = ["--prompt", prompt, "--seed", "7", "--steps", "20"];
    let output =
        interconcept(&[&["generate"], &args[..], &["--out", path_str(&original)]].concat());
    expect_success(&output);

    let (pixels, recipe) = read_picture(&original);
    assert_eq!(recipe.prompt, prompt);
    assert_eq!(recipe.seed, 7);
    assert_eq!(recipe.sampling.num_steps, 20);
    assert_eq!(
        pixels.len(),
        recipe.sampling.width * recipe.sampling.height * 3
    );

    let replayed = dir.path().join("Y.png");
    let output = interconcept(&["replay", path_str(&original), "--out", path_str(&replayed)]);
    expect_success(&output);
    let (replayed_pixels, replayed_recipe) = read_picture(&replayed);
    assert!(replayed_pixels == pixels, "replay drew other pixels");
    assert_eq!(replayed_recipe, recipe);
}

#[test]
fn an_empty_prompt_generates_unconditionally() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("empty.png");
    let output = interconcept(&[
        "generate",
        "--prompt",
        "",
        "--seed",
        "3",
        "--out",
        path_str(&out),
    ]);
    expect_success(&output);
    let (pixels, recipe) = read_picture(&out);
    assert_eq!(recipe.prompt, "");
    assert_eq!(recipe.seed, 3);
    assert!(!recipe.non_finite);
    assert!(!pixels.is_empty());
}

#[test]
fn tokenize_prints_clip_ids() {
    let output = interconcept(&["tokenize", "a cat"]);
    expect_success(&output);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "49406 320 2368 49407\n"
    );
}

#[test]
fn argument_errors_name_the_argument_on_one_line() {
    let missing = expect_one_error_line(&interconcept(&["generate", "--prompt", "a bag"]));
    assert!(missing.contains("--out"), "{missing}");
    let bad = expect_one_error_line(&interconcept(&[
        "generate",
        "--scheduler",
        "nope",
        "--out",
        "x.png",
    ]));
    assert!(
        bad.contains("ddim"),
        "the possible values are listed: {bad}"
    );
}

#[test]
fn a_prompt_longer_than_77_tokens_is_made_with_a_warning_that_says_what_was_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("long.png");
    let prompt = format!("{} the very end", "a red sneaker, ".repeat(30));
    let output = interconcept(&[
        "generate",
        "--prompt",
        &prompt,
        "--steps",
        "2",
        "--out",
        path_str(&out),
    ]);
    expect_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: prompt truncated"))
        .unwrap_or_else(|| panic!("no truncation warning in {stderr}"));
    assert!(warning.contains("the very end"), "{warning}");
}
