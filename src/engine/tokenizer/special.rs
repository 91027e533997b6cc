//! Where `<|startoftext|>` and `<|endoftext|>` written in a prompt count as special tokens.
//!
//! The slow tokenizer (OpenAI's, as ported by Hugging Face) sees them in two places: spelled
//! exactly, anywhere, before any clean-up (its added-token split); and in any casing after
//! clean-up and lowercasing, where CLIP's pattern starts a new word (the pattern lists them
//! first). So `A<|EndOfText|>` holds one but `€<|EndOfText|>` does not: `€<|` is one run of
//! symbols. The fast tokenizer instead matches them anywhere after lowercasing; we follow the
//! slow one, and cleaning each piece between exact spellings separately is part of that (a `<`
//! in one piece does not stop HTML entities in another from being decoded).

use tokenizers::utils::SysRegex;

use super::{BOS_TOKEN, EOS_TOKEN, clean};

/// CLIP's word pattern as OpenAI wrote it, special tokens first.
pub(super) const WORD_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A stretch of a prompt: cleaned text for BPE, or a special token.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece {
    /// Cleaned, lowercase text without special tokens in it.
    Text(String),
    /// `<|startoftext|>` or `<|endoftext|>`.
    Special(&'static str),
}

/// Splits a prompt into cleaned text and the special tokens the slow tokenizer finds in it;
/// `word_pattern` is [`WORD_PATTERN`] compiled.
pub(super) fn split_prompt(prompt: &str, word_pattern: &SysRegex) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = prompt;

    // Exact spellings split the raw prompt; each piece between them is cleaned on its own.
    loop {
        let next = [BOS_TOKEN, EOS_TOKEN]
            .into_iter()
            .filter_map(|token| rest.find(token).map(|at| (at, token)))
            .min();
        let Some((at, token)) = next else {
            split_cleaned(&clean::clean_prompt(rest), word_pattern, &mut pieces);
            return pieces;
        };
        split_cleaned(&clean::clean_prompt(&rest[..at]), word_pattern, &mut pieces);
        pieces.push(Piece::Special(token));
        rest = &rest[at + token.len()..];
    }
}

/// Splits cleaned text where CLIP's pattern matches a whole special token.
fn split_cleaned(text: &str, word_pattern: &SysRegex, pieces: &mut Vec<Piece>) {
    let mut start = 0;
    for (from, to) in word_pattern.find_iter(text) {
        let word = &text[from..to];
        let Some(token) = [BOS_TOKEN, EOS_TOKEN].into_iter().find(|t| *t == word) else {
            continue;
        };
        if start < from {
            pieces.push(Piece::Text(text[start..from].to_owned()));
        }
        pieces.push(Piece::Special(token));
        start = to;
    }
    if start < text.len() {
        pieces.push(Piece::Text(text[start..].to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(prompt: &str) -> Vec<Piece> {
        let pattern = SysRegex::new(WORD_PATTERN).expect("pattern compiles");
        split_prompt(prompt, &pattern)
    }

    #[test]
    fn exact_spellings_split_before_cleaning() {
        assert_eq!(
            split("A&amp;<|endoftext|>  B <i>"),
            [
                Piece::Text("a&".into()),
                Piece::Special(EOS_TOKEN),
                Piece::Text("b <i>".into())
            ]
        );
    }

    #[test]
    fn other_casings_count_only_where_a_word_starts() {
        assert_eq!(
            split("a <|EndOfText|>b"),
            [
                Piece::Text("a ".into()),
                Piece::Special(EOS_TOKEN),
                Piece::Text("b".into())
            ]
        );
        assert_eq!(
            split("€<|EndOfText|>"),
            [Piece::Text("€<|endoftext|>".into())]
        );
    }
}
