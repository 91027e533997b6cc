//! The arithmetic of a sweep: the values it runs over, tile file names, and the grid that
//! puts the tiles together.

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

/// Lays equally sized RGB tiles out in rows of `columns`, with a 2-pixel white gap.
pub fn grid(
    tiles: &[Vec<u8>],
    width: usize,
    height: usize,
    columns: usize,
) -> (usize, usize, Vec<u8>) {
    const GAP: usize = 2;
    let rows = tiles.len().div_ceil(columns);
    let (gw, gh) = (
        columns * width + (columns + 1) * GAP,
        rows * height + (rows + 1) * GAP,
    );
    let mut rgb = vec![255u8; gw * gh * 3];
    for (i, tile) in tiles.iter().enumerate() {
        let (x0, y0) = (
            GAP + (i % columns) * (width + GAP),
            GAP + (i / columns) * (height + GAP),
        );
        for y in 0..height {
            let from = &tile[y * width * 3..(y + 1) * width * 3];
            let at = ((y0 + y) * gw + x0) * 3;
            rgb[at..at + width * 3].copy_from_slice(from);
        }
    }
    (gw, gh, rgb)
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
    fn tiles_go_in_rows_with_gaps() {
        let red = [255, 0, 0].repeat(4);
        let (w, h, rgb) = grid(&[red.clone(), red.clone(), red], 2, 2, 2);
        assert_eq!((w, h), (2 * 2 + 3 * 2, 2 * 2 + 3 * 2));
        // The first pixel of the first tile sits after the gap.
        let at = (2 * w + 2) * 3;
        assert_eq!(&rgb[at..at + 3], &[255, 0, 0]);
        // The fourth cell is empty.
        let at = ((2 + 2 + 2) * w + 2 + 2 + 2) * 3;
        assert_eq!(&rgb[at..at + 3], &[255, 255, 255]);
        assert_eq!(file_safe("noise 2% (seed 1)"), "noise_2___seed_1_");
    }
}
