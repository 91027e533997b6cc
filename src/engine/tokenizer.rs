//! CLIP's byte-pair tokenizer: turns a prompt into the 77 token ids the text encoder reads.
//!
//! Owns loading a diffusers `tokenizer/` folder (`vocab.json`, `merges.txt` and, when present,
//! `special_tokens_map.json` / `tokenizer_config.json` for the pad token) and encoding a prompt
//! into BOS, at most 75 tokens, EOS and padding, reporting the text that did not fit.
//!
//! The `tokenizers` pipeline is the one Hugging Face's `CLIPTokenizerFast` builds: NFC, runs of
//! whitespace to one space, lowercase; CLIP's split pattern, then byte-level symbols without a
//! prefix space; BPE whose word-final symbols end in `</w>`. BOS (`<|startoftext|>`) and EOS
//! (`<|endoftext|>`) are put around the text here.
//!
//! The fast tokenizer is not quite OpenAI's. OpenAI's tokenizer, and the slow `CLIPTokenizer`
//! that ports it to Python and that Stable Diffusion's reference code uses, first run
//! `ftfy.fix_text` and lowercase with Python's rules, and they find special tokens written in
//! a prompt in other places. On the 85 reference prompts of `tests/data/clip_token_ids.json`
//! slow and fast disagree on 19: HTML entities (`&amp;`), curly quotes, fullwidth forms,
//! ligatures, control characters and escapes, C1 characters, a final capital sigma (Python
//! lowercases it to `ς`), `<|endoftext|>` inside a run of symbols, and mojibake. We follow the
//! slow one: `tokenizer/special.rs` finds special tokens where it does, every piece between
//! them goes through the clean-up in `tokenizer/clean.rs` (ftfy's table-driven fixes, then
//! Python's whitespace clean-up and lowercasing), and the ids then equal the slow tokenizer's on
//! every reference prompt but one: ftfy's mojibake repair (`cafÃ©` read as `café`) is left out
//! on purpose, as it guesses at encodings with large heuristics.
//!
//! Stable Diffusion 1.x pads with `<|endoftext|>` (49407), 2.x with `!` (id 0); the pad token is
//! read from the folder. A prompt longer than 75 tokens keeps its first 75, as CLIP does.

mod clean;
mod files;
mod special;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::utils::SysRegex;
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

/// CLIP's BOS token, which opens every sequence.
pub const BOS_TOKEN: &str = "<|startoftext|>";

/// CLIP's EOS token, which closes the prompt (and pads it in SD 1.x).
pub const EOS_TOKEN: &str = "<|endoftext|>";

/// The sequence length of CLIP's text encoder: BOS, 75 prompt tokens, EOS.
pub const MAX_LEN: usize = 77;

/// CLIP's split pattern: contractions, letter runs, single digits, runs of other symbols.
const SPLIT_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The suffix BPE symbols carry at the end of a word.
const END_OF_WORD: &str = "</w>";

/// What can go wrong loading a tokenizer folder or encoding a prompt.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required file is not there.
    #[error("tokenizer file not found: {}", path.display())]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },

    /// A file exists but could not be read.
    #[error("cannot read tokenizer file {}", path.display())]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },

    /// A file was read but its content is not what a CLIP tokenizer needs.
    #[error("{reason} in {}", path.display())]
    Corrupt {
        /// What is wrong, e.g. `line 7 is "a b c", expected two symbols`.
        reason: String,
        /// The file at fault.
        path: PathBuf,
    },

    /// The `tokenizers` library refused the prompt.
    #[error("cannot tokenize the prompt")]
    Encode(#[source] tokenizers::Error),

    /// One of CLIP's fixed regular expressions did not compile: the regex library is broken.
    #[error("CLIP's split patterns do not compile")]
    Pattern(#[source] tokenizers::Error),
}

/// A prompt as the text encoder reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// Always [`MAX_LEN`] ids: BOS, the prompt's tokens, EOS, then padding.
    pub ids: Vec<u32>,
    /// How many ids are real tokens, BOS and EOS included (2 for an empty prompt).
    pub num_tokens: usize,
    /// The part of the prompt that did not fit, decoded from the dropped tokens as
    /// [`ClipTokenizer::decode`] does (`"on artstation , 8 k"`); `None` when the prompt fits.
    pub truncated: Option<String>,
}

/// CLIP's BPE tokenizer with the pad token of one model.
#[derive(Clone)]
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    word_pattern: Arc<SysRegex>,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// Loads a diffusers `tokenizer/` folder: `vocab.json` and `merges.txt` are required; the pad
    /// token comes from `special_tokens_map.json`, else `tokenizer_config.json`, else EOS.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let vocab_path = dir.join("vocab.json");
        let vocab = files::read_vocab(&vocab_path)?;
        let merges_path = dir.join("merges.txt");
        let merges = files::read_merges(&merges_path)?;

        // The special tokens must be in the vocabulary, with the ids CLIP gives them.
        let id_of = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| TokenizerError::Corrupt {
                    reason: format!("token {token:?} is not in the vocabulary"),
                    path: vocab_path.clone(),
                })
        };
        let bos_id = id_of(BOS_TOKEN)?;
        let eos_id = id_of(EOS_TOKEN)?;
        let pad_id = match files::read_pad_token(dir)? {
            Some((token, path)) => {
                vocab
                    .get(&token)
                    .copied()
                    .ok_or_else(|| TokenizerError::Corrupt {
                        reason: format!("pad token {token:?} is not in the vocabulary"),
                        path,
                    })?
            }
            None => eos_id,
        };

        let bpe = build_bpe(vocab.into_iter().collect(), merges).map_err(|e| {
            TokenizerError::Corrupt {
                reason: format!("vocab.json and merges.txt do not form a BPE model: {e}"),
                path: merges_path,
            }
        })?;
        let tokenizer = build_tokenizer(bpe).map_err(TokenizerError::Pattern)?;
        let word_pattern = SysRegex::new(special::WORD_PATTERN).map_err(TokenizerError::Pattern)?;
        Ok(Self {
            tokenizer,
            word_pattern: Arc::new(word_pattern),
            bos_id,
            eos_id,
            pad_id,
        })
    }

    /// Encodes a prompt into exactly [`MAX_LEN`] ids. An empty prompt gives BOS, EOS and
    /// padding: the unconditional input of classifier-free guidance.
    pub fn encode(&self, prompt: &str) -> Result<Tokens, TokenizerError> {
        let mut tokens = Vec::new();
        for piece in special::split_prompt(prompt, &self.word_pattern) {
            match piece {
                special::Piece::Special(BOS_TOKEN) => tokens.push(self.bos_id),
                special::Piece::Special(_) => tokens.push(self.eos_id),
                special::Piece::Text(text) => {
                    let encoding = self
                        .tokenizer
                        .encode(text.as_str(), false)
                        .map_err(TokenizerError::Encode)?;
                    tokens.extend_from_slice(encoding.get_ids());
                }
            }
        }

        // BOS, the first 75 tokens, EOS; what is left over is reported, not silently lost.
        let kept = tokens.len().min(MAX_LEN - 2);
        let mut ids = Vec::with_capacity(MAX_LEN);
        ids.push(self.bos_id);
        ids.extend_from_slice(&tokens[..kept]);
        ids.push(self.eos_id);
        let num_tokens = ids.len();
        ids.resize(MAX_LEN, self.pad_id);

        let truncated = (kept < tokens.len()).then(|| self.decode(&tokens[kept..]));
        Ok(Tokens {
            ids,
            num_tokens,
            truncated,
        })
    }

    /// Turns ids back into text as CLIP does: bytes joined, `</w>` read as a space, trimmed.
    /// The text is the cleaned, lowercase prompt with a space after every word and punctuation
    /// run; ids outside the vocabulary are skipped, bytes that are not UTF-8 become U+FFFD.
    /// Decoding one id at a time shows how a prompt was split into tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        let symbols: String = ids
            .iter()
            .filter_map(|&id| self.tokenizer.id_to_token(id))
            .collect();
        let bytes: Vec<u8> = symbols
            .replace(END_OF_WORD, " ")
            .chars()
            .filter_map(byte_of_symbol)
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// The number of ids [`Self::encode`] returns: 77.
    pub fn max_len(&self) -> usize {
        MAX_LEN
    }

    /// The id that fills the sequence after EOS: 49407 for SD 1.x, 0 for SD 2.x.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The same tokenizer padding with another token (`"!"` for SD 2.x, whose single-file
    /// checkpoints carry no tokenizer files); `None` when the token is not in the vocabulary.
    pub fn with_pad_token(mut self, token: &str) -> Option<Self> {
        self.pad_id = self.tokenizer.token_to_id(token)?;
        Some(self)
    }

    /// The id of `<|startoftext|>`, which opens every sequence.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The id of `<|endoftext|>`, which closes the prompt.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
}

/// CLIP's BPE model: word-final symbols end in `</w>`, unknown symbols (there are none: every
/// byte has one) would become `<|endoftext|>`.
fn build_bpe(vocab: Vocab, merges: Vec<(String, String)>) -> tokenizers::Result<BPE> {
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(EOS_TOKEN.to_owned())
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(END_OF_WORD.to_owned())
        .fuse_unk(false)
        .build()
}

/// Builds the `tokenizers` pipeline of `CLIPTokenizerFast`, less its added tokens,
/// post-processor and decoder: `special.rs` finds special tokens as OpenAI's tokenizer does,
/// [`ClipTokenizer::encode`] adds BOS and EOS itself, and [`ClipTokenizer::decode`] reads `</w>`
/// as a space, which the byte-level decoder does not.
fn build_tokenizer(bpe: BPE) -> tokenizers::Result<Tokenizer> {
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
        NFC.into(),
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )?
        .into(),
        Lowercase.into(),
    ])));
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        Split::new(
            SplitPattern::Regex(SPLIT_PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )?
        .into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    Ok(tokenizer)
}

/// The byte a byte-level symbol stands for (GPT-2's `bytes_to_unicode`, inverted): printable
/// Latin-1 characters stand for themselves, the other 68 bytes for U+0100 on, in byte order.
fn byte_of_symbol(symbol: char) -> Option<u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let code = u32::from(symbol);
    if let Ok(b) = u8::try_from(code)
        && printable(b)
    {
        return Some(b);
    }
    if symbol == ' ' {
        return Some(b' ');
    }
    let rank = usize::try_from(code.checked_sub(0x100)?).ok()?;
    (0..=255u8).filter(|&b| !printable(b)).nth(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_invert_gpt2_table() {
        assert_eq!(byte_of_symbol('a'), Some(b'a'));
        assert_eq!(byte_of_symbol('Ġ'), Some(b' '));
        assert_eq!(byte_of_symbol('Ā'), Some(0));
        assert_eq!(byte_of_symbol('Ń'), Some(0xad));
        assert_eq!(byte_of_symbol('ń'), None);
    }

    /// Without the clean-up, the pipeline must give exactly `CLIPTokenizerFast`'s ids.
    #[test]
    fn pipeline_alone_matches_clip_tokenizer_fast() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/model/tokenizer"
        ));
        let tokenizer = ClipTokenizer::from_dir(dir).expect("shipped tokenizer loads");
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/clip_token_ids.json"))
                .expect("reference parses");
        for case in reference["cases"].as_array().expect("cases") {
            let prompt = case["prompt"].as_str().expect("prompt");
            if prompt.contains("<|") {
                continue; // special tokens in the text are found by `special.rs`, not here
            }
            let expected = case.get("fast_ids").unwrap_or(&case["ids"]);
            let expected: Vec<u32> = serde_json::from_value(expected.clone()).expect("ids");
            let encoding = tokenizer.tokenizer.encode(prompt, false).expect("encodes");
            let ids = encoding.get_ids();
            let kept = ids.len().min(MAX_LEN - 2);
            assert_eq!(ids[..kept], expected[1..=kept], "{prompt:?}");
        }
    }
}
