//! Checks `ClipTokenizer` against the ids of Hugging Face's slow `CLIPTokenizer` (OpenAI's
//! tokenizer, with ftfy) recorded in `tests/data/clip_token_ids.json` by
//! `tests/data/make_clip_token_ids.py`, and its handling of folders, padding and truncation.

use std::path::{Path, PathBuf};

use interconcept::engine::tokenizer::{ClipTokenizer, MAX_LEN, TokenizerError};
use serde::Deserialize;

/// The tokenizer folder shipped with the embedded model.
const TOKENIZER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/model/tokenizer");

/// The reference ids, made by `tests/data/make_clip_token_ids.py`.
const REFERENCE: &str = include_str!("data/clip_token_ids.json");

/// Prompts where the Rust tokenizer is expected to give the fast tokenizer's ids, not the slow
/// one's: ftfy's mojibake repair (`cafÃ©` read back as `café`) is deliberately not redone.
const FTFY_ONLY: &[&str] = &["mojibake cafÃ©"];

const BOS: u32 = 49406;
const EOS: u32 = 49407;

#[derive(Deserialize)]
struct Reference {
    max_len: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    pad_id: u32,
    ids: Vec<u32>,
    num_tokens: usize,
    truncated: Option<String>,
    fast_ids: Option<Vec<u32>>,
}

fn sd1_tokenizer() -> ClipTokenizer {
    ClipTokenizer::from_dir(Path::new(TOKENIZER_DIR)).expect("shipped tokenizer loads")
}

/// A temporary tokenizer folder with the shipped vocabulary and the given extra files.
fn folder_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    for name in ["vocab.json", "merges.txt"] {
        std::fs::copy(Path::new(TOKENIZER_DIR).join(name), dir.path().join(name))
            .expect("copy tokenizer file");
    }
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write tokenizer file");
    }
    dir
}

/// SD 2.x's folder names `!` (id 0) as its pad token in `tokenizer_config.json`.
fn sd2_tokenizer() -> ClipTokenizer {
    let dir = folder_with(&[("tokenizer_config.json", r#"{"pad_token": "!"}"#)]);
    ClipTokenizer::from_dir(dir.path()).expect("SD 2.x style folder loads")
}

#[test]
fn every_reference_prompt_matches_openai_clip() {
    let reference: Reference = serde_json::from_str(REFERENCE).expect("reference json parses");
    assert_eq!(reference.max_len, MAX_LEN);
    let sd1 = sd1_tokenizer();
    let sd2 = sd2_tokenizer();
    assert_eq!(sd1.pad_id(), EOS);
    assert_eq!(sd2.pad_id(), 0);

    let mut failures = Vec::new();
    for case in &reference.cases {
        let tokenizer = if case.pad_id == 0 { &sd2 } else { &sd1 };
        assert_eq!(
            case.pad_id,
            tokenizer.pad_id(),
            "pad id of {:?}",
            case.prompt
        );
        let tokens = tokenizer.encode(&case.prompt).expect("prompt encodes");

        let (expected, num_tokens) = if FTFY_ONLY.contains(&case.prompt.as_str()) {
            let fast = case
                .fast_ids
                .as_ref()
                .expect("ftfy-only case records the fast ids");
            let eos = fast
                .iter()
                .position(|&id| id == EOS)
                .expect("fast ids hold EOS");
            (fast, eos + 1)
        } else {
            (&case.ids, case.num_tokens)
        };
        if tokens.ids != *expected
            || tokens.num_tokens != num_tokens
            || tokens.truncated != case.truncated
        {
            failures.push(format!(
                "{:?} (pad {}):\n  got      {:?} n={} cut={:?}\n  expected {:?} n={} cut={:?}",
                case.prompt,
                case.pad_id,
                tokens.ids,
                tokens.num_tokens,
                tokens.truncated,
                expected,
                num_tokens,
                case.truncated
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} prompts differ from the reference:\n{}",
        failures.len(),
        reference.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn empty_prompt_is_bos_eos_and_padding() {
    for (tokenizer, pad) in [(sd1_tokenizer(), EOS), (sd2_tokenizer(), 0)] {
        let tokens = tokenizer.encode("").expect("empty prompt encodes");
        let mut expected = vec![BOS, EOS];
        expected.resize(MAX_LEN, pad);
        assert_eq!(tokens.ids, expected);
        assert_eq!(tokens.num_tokens, 2);
        assert_eq!(tokens.truncated, None);
    }
}

#[test]
fn pad_zero_fills_after_eos() {
    let tokens = sd2_tokenizer()
        .encode("a cat in a party hat")
        .expect("prompt encodes");
    assert_eq!(tokens.ids[..8], [BOS, 320, 2368, 530, 320, 1580, 3801, EOS]);
    assert_eq!(tokens.num_tokens, 8);
    assert!(tokens.ids[8..].iter().all(|&id| id == 0));
    assert_eq!(tokens.ids.len(), MAX_LEN);
}

#[test]
fn pad_token_may_be_an_added_token_object_and_the_special_map_wins() {
    let added = folder_with(&[(
        "tokenizer_config.json",
        r#"{"pad_token": {"__type": "AddedToken", "content": "!", "normalized": true}}"#,
    )]);
    let tokenizer = ClipTokenizer::from_dir(added.path()).expect("folder loads");
    assert_eq!(tokenizer.pad_id(), 0);

    let both = folder_with(&[
        ("tokenizer_config.json", r#"{"pad_token": "!"}"#),
        (
            "special_tokens_map.json",
            r#"{"pad_token": "<|endoftext|>"}"#,
        ),
    ]);
    let tokenizer = ClipTokenizer::from_dir(both.path()).expect("folder loads");
    assert_eq!(tokenizer.pad_id(), EOS);

    let neither = folder_with(&[]);
    let tokenizer = ClipTokenizer::from_dir(neither.path()).expect("folder loads");
    assert_eq!(tokenizer.pad_id(), EOS);
}

#[test]
fn truncation_keeps_75_tokens_and_reports_the_rest() {
    let tokenizer = sd1_tokenizer();
    let words = |n: usize| vec!["a"; n].join(" ");

    let fits = tokenizer.encode(&words(75)).expect("prompt encodes");
    assert_eq!(fits.num_tokens, MAX_LEN);
    assert_eq!(fits.truncated, None);
    assert_eq!(fits.ids[MAX_LEN - 1], EOS);

    let cut = tokenizer.encode(&words(76)).expect("prompt encodes");
    assert_eq!(cut.ids, fits.ids);
    assert_eq!(cut.num_tokens, MAX_LEN);
    assert_eq!(cut.truncated.as_deref(), Some("a"));

    let prompt = format!("{}, Trending on ArtStation, 8K", words(73));
    let cut = tokenizer.encode(&prompt).expect("prompt encodes");
    assert_eq!(cut.ids[MAX_LEN - 1], EOS);
    assert_eq!(
        cut.truncated.as_deref(),
        Some("on artstation , 8 k"),
        "dropped tokens decode to readable, lowercase words"
    );
}

#[test]
fn decode_reads_back_the_cleaned_prompt() {
    let tokenizer = sd1_tokenizer();
    let tokens = tokenizer
        .encode("A Cat in a  Party Hat, café 🎩")
        .expect("prompt encodes");
    let inner = &tokens.ids[1..tokens.num_tokens - 1];
    assert_eq!(tokenizer.decode(inner), "a cat in a party hat , café 🎩");
}

/// Asserts that loading `dir` fails with an error naming `file` inside `dir`.
fn assert_error_names(dir: &Path, file: &str) -> TokenizerError {
    let err = ClipTokenizer::from_dir(dir).expect_err("broken folder must not load");
    let message = err.to_string();
    let path: PathBuf = dir.join(file);
    assert!(
        message.contains(&path.display().to_string()),
        "error {message:?} does not name {}",
        path.display()
    );
    err
}

#[test]
fn missing_vocab_names_the_file() {
    let dir = folder_with(&[]);
    std::fs::remove_file(dir.path().join("vocab.json")).expect("remove vocab");
    let err = assert_error_names(dir.path(), "vocab.json");
    assert!(matches!(err, TokenizerError::Missing { .. }), "{err:?}");
}

#[test]
fn corrupt_vocab_names_the_file() {
    let dir = folder_with(&[("vocab.json", r#"{"a": 0, "b": "#)]);
    let err = assert_error_names(dir.path(), "vocab.json");
    assert!(err.to_string().contains("invalid JSON"), "{err}");

    let dir = folder_with(&[("vocab.json", r#"{"a": 0, "b": 1}"#)]);
    let err = assert_error_names(dir.path(), "vocab.json");
    assert!(err.to_string().contains("<|startoftext|>"), "{err}");
}

#[test]
fn corrupt_merges_names_the_file_and_line() {
    let dir = folder_with(&[("merges.txt", "#version: 0.2\ni n\nt h e\n")]);
    let err = assert_error_names(dir.path(), "merges.txt");
    assert!(err.to_string().contains("line 3"), "{err}");

    let dir = folder_with(&[("merges.txt", "#version: 0.2\nzzzz qqqq\n")]);
    assert_error_names(dir.path(), "merges.txt");

    let dir = folder_with(&[]);
    std::fs::remove_file(dir.path().join("merges.txt")).expect("remove merges");
    assert_error_names(dir.path(), "merges.txt");
}

#[test]
fn unknown_pad_token_names_the_config() {
    let dir = folder_with(&[("special_tokens_map.json", r#"{"pad_token": "<pad>"}"#)]);
    let err = assert_error_names(dir.path(), "special_tokens_map.json");
    assert!(err.to_string().contains("<pad>"), "{err}");
}
