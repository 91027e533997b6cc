//! The small print of a sweep: the values it runs over, tile file names and tile labels.

use anyhow::{Context, Result, bail};

/// Parses `--values`: a comma-separated list, or `START:END:STEP` with both ends included.
pub fn parse_values(text: &str) -> Result<Vec<f64>> {
    let number = |s: &str| -> Result<f64> {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .with_context(|| format!("--values: {s:?} is not a number"))
    };
    let parts: Vec<&str> = text.split(':').collect();
    let values = match parts.as_slice() {
        [start, end, step] => {
            let (start, end, step) = (number(start)?, number(end)?, number(step)?);
            if step == 0.0 || (end - start) * step < 0.0 {
                bail!("--values {text}: the step must lead from start to end");
            }
            let n = ((end - start) / step + 1e-9).floor() as usize + 1;
            if n > 10_000 {
                bail!("--values {text}: {n} values, at most 10000");
            }
            (0..n).map(|i| start + step * i as f64).collect()
        }
        [_] => text.split(',').map(number).collect::<Result<Vec<_>>>()?,
        _ => bail!("--values {text}: expected a list `1,2,3` or a range `START:END:STEP`"),
    };
    if values.is_empty() {
        bail!("--values is empty");
    }
    Ok(values)
}

/// Keeps letters, digits, `.`, `-` and `_`; everything else becomes `_`.
pub fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A module name short enough to label a small tile: `down_blocks.0.attentions.1.
/// transformer_blocks.0.attn1.to_q` becomes `d0.a1.t0.attn1.to_q`. The full name stays in the
/// tile's recipe and in `sweep.json`.
pub fn short_module_label(name: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut parts = name.split('.').peekable();
    while let Some(part) = parts.next() {
        let index = parts
            .peek()
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .map(|p| p.to_string());
        let short = match part {
            "text_model" => continue,
            "down_blocks" => "d",
            "up_blocks" => "u",
            "resnets" => "r",
            "attentions" => "a",
            "transformer_blocks" => "t",
            "layers" => "L",
            "downsamplers" => "down",
            "upsamplers" => "up",
            "mid_block" => "mid",
            "time_embedding" => "time",
            "embeddings" => "emb",
            "encoder" => "enc",
            "decoder" => "dec",
            other => {
                out.push(other.to_string());
                continue;
            }
        };
        match index {
            // Samplers come one to a block: their index says nothing.
            Some(i) if !matches!(short, "down" | "up") => {
                parts.next();
                out.push(format!("{short}{i}"));
            }
            Some(_) => {
                parts.next();
                out.push(short.to_string());
            }
            None => out.push(short.to_string()),
        }
    }
    out.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_lists_and_inclusive_ranges() {
        assert_eq!(parse_values("0,1,2.5").unwrap(), vec![0.0, 1.0, 2.5]);
        assert_eq!(parse_values("0:10:5").unwrap(), vec![0.0, 5.0, 10.0]);
        assert_eq!(parse_values("1:0:-0.5").unwrap(), vec![1.0, 0.5, 0.0]);
        assert!(parse_values("0:10:-1").is_err());
        assert!(parse_values("0:1:0").is_err());
        assert!(parse_values("a,b").is_err());
        assert!(parse_values("0:1").is_err());
    }

    #[test]
    fn labels_are_short_and_file_names_safe() {
        assert_eq!(
            short_module_label("down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q"),
            "d0.a1.t0.attn1.to_q"
        );
        assert_eq!(
            short_module_label("up_blocks.2.upsamplers.0.conv"),
            "u2.up.conv"
        );
        assert_eq!(short_module_label("conv_in"), "conv_in");
        assert_eq!(
            short_module_label("text_model.encoder.layers.11.mlp.fc1"),
            "enc.L11.mlp.fc1"
        );
        assert_eq!(file_safe("noise 2% (seed 1)"), "noise_2___seed_1_");
    }
}
