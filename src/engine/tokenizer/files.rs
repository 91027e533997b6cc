//! Reading a diffusers `tokenizer/` folder: `vocab.json`, `merges.txt` and the pad token named
//! by `special_tokens_map.json` or `tokenizer_config.json`. Every error names the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::TokenizerError;

/// Reads `vocab.json`: symbol to id.
pub(super) fn read_vocab(path: &Path) -> Result<HashMap<String, u32>, TokenizerError> {
    parse_json(path, &read_file(path)?)
}

/// Reads `merges.txt`: the BPE merges in priority order.
pub(super) fn read_merges(path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    parse_merges(path, &read_file(path)?)
}

/// Reads the pad token, if the folder names one, with the file that named it.
pub(super) fn read_pad_token(dir: &Path) -> Result<Option<(String, PathBuf)>, TokenizerError> {
    /// `pad_token` is a plain string or an `AddedToken` object with a `content` field.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TokenSpec {
        Plain(String),
        Added { content: String },
    }

    #[derive(Deserialize)]
    struct PadOnly {
        pad_token: Option<TokenSpec>,
    }

    // special_tokens_map.json overrides tokenizer_config.json, as in transformers.
    for name in ["special_tokens_map.json", "tokenizer_config.json"] {
        let path = dir.join(name);
        let text = match read_file(&path) {
            Ok(text) => text,
            Err(TokenizerError::Missing { .. }) => continue,
            Err(e) => return Err(e),
        };
        let token = match parse_json::<PadOnly>(&path, &text)?.pad_token {
            Some(TokenSpec::Plain(token) | TokenSpec::Added { content: token }) => token,
            None => continue,
        };
        return Ok(Some((token, path)));
    }
    Ok(None)
}

/// Reads a whole text file, telling a missing file from an unreadable one.
fn read_file(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TokenizerError::Missing {
            path: path.to_owned(),
        },
        _ => TokenizerError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

/// Parses JSON, naming the file and the position on failure.
fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, TokenizerError> {
    serde_json::from_str(text).map_err(|e| TokenizerError::Corrupt {
        reason: format!("invalid JSON ({e})"),
        path: path.to_owned(),
    })
}

/// Parses `merges.txt`: an optional `#version` line, then one merge of two symbols per line.
fn parse_merges(path: &Path, text: &str) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("#version") || line.is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                merges.push((a.to_owned(), b.to_owned()));
            }
            _ => {
                return Err(TokenizerError::Corrupt {
                    reason: format!("line {} is {line:?}, expected two symbols", i + 1),
                    path: path.to_owned(),
                });
            }
        }
    }
    Ok(merges)
}
