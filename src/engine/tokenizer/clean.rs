//! The text clean-up OpenAI's CLIP tokenizer runs before BPE, minus mojibake repair.
//!
//! OpenAI's tokenizer (and Hugging Face's slow `CLIPTokenizer`, its Python port) passes every
//! prompt through `ftfy.fix_text`, collapses whitespace runs, trims and lowercases. The fast
//! `tokenizers` pipeline only does NFC, whitespace and lowercase, so prompts with curly quotes,
//! HTML entities, fullwidth letters or ligatures come out as different ids. This module redoes
//! the cheap, table-driven parts of `ftfy.fix_text` (version 6) in ftfy's order, repeated until
//! the text stops changing as ftfy does:
//!
//! 1. HTML entities ending in `;`: numeric ones, the HTML 4 names plus `&apos;`, and their
//!    all-caps spellings; skipped from the first line holding a `<` on, as ftfy's "auto" mode;
//! 2. C1 control characters read as Windows-1252 (`\u{85}` becomes `…`);
//! 3. Latin ligatures (`ﬁ` to `fi`), 4. halfwidth and fullwidth forms (`Ａ` to `A`),
//! 5. curly quotes to straight ones, 6. line breaks to `\n`, 7. ANSI terminal escapes and
//! 8. invisible control characters removed, 9. NFC.
//!
//! Left out: ftfy's mojibake repair (`cafÃ©` stays as written), which guesses at encodings
//! with large heuristics, and HTML 5 entity names beyond HTML 4 (`&checkmark;`). Also left out,
//! because Hugging Face's slow port (our reference) leaves them out too: the two extra
//! `html.unescape` passes of OpenAI's `basic_clean`, which also decode `&amp` without `;`.

use tokenizers::NormalizedString;

use super::tables::{HTML_ENTITIES, WIDTH_FORMS, WINDOWS_1252_C1};

/// The longest entity name ftfy's pattern `&#?[0-9A-Za-z]{1,24};` accepts.
const MAX_ENTITY_LEN: usize = 24;

/// Cleans one piece of a prompt the way the slow `CLIPTokenizer` does before BPE:
/// `whitespace_clean(ftfy.fix_text(text)).lower()`.
pub(super) fn clean_prompt(text: &str) -> String {
    // ftfy works line by line; once a line holds a `<` the text may be HTML and entities stay.
    let mut fixed = String::with_capacity(text.len());
    let mut unescape = true;
    for line in text.split_inclusive('\n') {
        unescape &= !line.contains('<');
        fixed.push_str(&fix_line(line, unescape));
    }

    // `whitespace_clean`: runs of whitespace become one space, then strip; then lowercase.
    let collapsed = fixed.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.to_lowercase()
}

/// Applies every fix to one line until the line stops changing.
fn fix_line(line: &str, unescape: bool) -> String {
    let mut text = line.to_owned();
    loop {
        let mut next = if unescape {
            unescape_html(&text)
        } else {
            text.clone()
        };
        next = next.chars().map(fix_c1_control).collect();
        next = fix_chars(&next);
        next = next
            .replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
        next = remove_terminal_escapes(&next);
        next.retain(|c| !is_unwanted_control(c));

        let mut normalized = NormalizedString::from(next.as_str());
        normalized.nfc();
        let next = normalized.get().to_owned();

        if next == text {
            return text;
        }
        text = next;
    }
}

/// Decodes `&name;`, `&#123;` and `&#x7b;` the way ftfy's `unescape_html` does.
fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];

        // The body is an optional `#` and 1 to 24 ASCII letters or digits, then `;`.
        let hash = usize::from(after.starts_with('#'));
        let len = after[hash..]
            .bytes()
            .take_while(u8::is_ascii_alphanumeric)
            .count();
        let ends = after.as_bytes().get(hash + len) == Some(&b';');
        let decoded = if ends && (1..=MAX_ENTITY_LEN).contains(&len) {
            let body = &after[hash..hash + len];
            if hash == 1 {
                numeric_entity(body)
            } else {
                named_entity(body)
            }
        } else {
            None
        };

        match decoded {
            Some(decoded) => {
                out.push_str(&decoded);
                rest = &after[hash + len + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A named entity: exact HTML 4 names, and all-caps spellings of lowercase ones (`&EACUTE;`).
fn named_entity(name: &str) -> Option<String> {
    let find = |name: &str| {
        HTML_ENTITIES
            .binary_search_by(|(key, _)| (*key).cmp(name))
            .ok()
            .map(|i| HTML_ENTITIES[i].1)
    };
    if let Some(c) = find(name) {
        return Some(c.to_string());
    }
    let lower = name.to_ascii_lowercase();
    if name == name.to_ascii_uppercase() && lower != name {
        return find(&lower).map(|c| c.to_uppercase().collect());
    }
    None
}

/// A numeric character reference as Python's `html.unescape` reads it; `None` keeps it as
/// written, which ftfy also does when the result would contain a `;`.
fn numeric_entity(body: &str) -> Option<String> {
    let (digits, radix) = match body.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (body, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }

    // At most 23 digits: fits in u128 in either radix.
    let num = u128::from_str_radix(digits, radix).ok()?;
    let decoded = match num {
        0 => "\u{fffd}".to_owned(),
        0x0d => "\r".to_owned(),
        0x80..=0x9f => fix_c1_control(char::from_u32(num as u32)?).to_string(),
        0xd800..=0xdfff => "\u{fffd}".to_owned(),
        n if n > 0x10ffff => "\u{fffd}".to_owned(),
        0x01..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0xfdd0..=0xfdef => String::new(),
        n if n & 0xfffe == 0xfffe => String::new(),
        n => char::from_u32(u32::try_from(n).ok()?)?.to_string(),
    };
    (!decoded.contains(';')).then_some(decoded)
}

/// Reads a C1 control character (U+0080 to U+009F) as the Windows-1252 byte it most likely was.
fn fix_c1_control(c: char) -> char {
    match c {
        '\u{80}'..='\u{9f}' => WINDOWS_1252_C1[c as usize - 0x80],
        _ => c,
    }
}

/// Ligatures, character widths and curly quotes, in ftfy's order.
fn fix_chars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match latin_ligature(c) {
            Some(letters) => out.push_str(letters),
            None => out.push(c),
        }
    }

    let widened = out;
    let mut out = String::with_capacity(widened.len());
    for c in widened.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ff5e}' => out.extend(char::from_u32(c as u32 - 0xfee0)),
            '\u{ff5f}'..='\u{ffef}' => match WIDTH_FORMS.binary_search_by_key(&c, |(k, _)| *k) {
                Ok(i) => out.push_str(WIDTH_FORMS[i].1),
                Err(_) => out.push(c),
            },
            _ => out.push(c),
        }
    }

    out.chars()
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

/// The Latin ligatures ftfy takes apart; ligatures of other scripts stay.
fn latin_ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// Removes ANSI escapes such as `\x1b[36;44m` (ESC, `[`, digits and `;`, one letter).
fn remove_terminal_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(esc) = rest.find("\u{1b}[") {
        out.push_str(&rest[..esc]);
        let after = &rest[esc + 2..];
        let params = after
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b';')
            .count();
        match after.as_bytes().get(params) {
            Some(b) if b.is_ascii_alphabetic() => rest = &after[params + 1..],
            _ => {
                out.push('\u{1b}');
                rest = &rest[esc + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Control characters ftfy removes: C0 controls except tab, newline, form feed and carriage
/// return, DEL, deprecated Arabic format controls, interlinear annotations, U+FFFC and the BOM.
fn is_unwanted_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}'
        | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(HTML_ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(WIDTH_FORMS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn entities_decode_like_ftfy() {
        assert_eq!(unescape_html("rock &amp; roll"), "rock & roll");
        assert_eq!(unescape_html("&amp;amp;"), "&amp;");
        assert_eq!(unescape_html("&#39;&#x27;&#X27;"), "'''");
        assert_eq!(unescape_html("P&EACUTE;REZ STRA&SZLIG;E"), "PÉREZ STRASSE");
        assert_eq!(
            unescape_html("&nTILDE; &amp &#59; &#x; &#1a; &&lt;"),
            "&nTILDE; &amp &#59; &#x; &#1a; &<"
        );
        assert_eq!(
            unescape_html("&#0;&#128;&#1;&#xD800;&#99999999;"),
            "\u{fffd}€\u{fffd}\u{fffd}"
        );
    }

    #[test]
    fn clean_prompt_matches_ftfy_steps() {
        assert_eq!(
            clean_prompt("  It’s  “ＡＢＣ”\t&amp;\u{fb01}ne\u{7}  "),
            "it's \"abc\" &fine"
        );
        assert_eq!(clean_prompt("a &amp;\n<b> &amp;"), "a & <b> &amp;");
        assert_eq!(clean_prompt("\u{1b}[36mblue\u{1b}[0m \u{85}"), "blue …");
        assert_eq!(clean_prompt("ΟΔΟΣ"), "οδος");
    }
}
