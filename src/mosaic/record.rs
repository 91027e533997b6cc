//! What a mosaic PNG says about itself: the grid and, per tile, where it sits and its recipe.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{MOSAIC_KIND, MOSAIC_VERSION};
use crate::recipe::Recipe;

/// Where one tile sits in a mosaic, and what makes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileRecord {
    /// Row, from 0 at the top.
    pub row: usize,
    /// Column, from 0 at the left.
    pub column: usize,
    /// Left edge in the mosaic, in pixels.
    pub x: usize,
    /// Top edge in the mosaic, in pixels.
    pub y: usize,
    /// The picture's width (before zoom).
    pub width: usize,
    /// The picture's height (before zoom).
    pub height: usize,
    /// The label drawn with it.
    pub label: String,
    /// Everything that makes the picture.
    pub recipe: Recipe,
}

/// What a mosaic PNG says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MosaicRecord {
    /// Always [`MOSAIC_KIND`].
    pub kind: String,
    /// Schema version.
    pub version: u32,
    /// The title line.
    pub title: String,
    /// Rows of tiles.
    pub rows: usize,
    /// Tiles per row.
    pub columns: usize,
    /// Mosaic pixels per picture pixel.
    pub zoom: usize,
    /// Labels above the columns.
    #[serde(default)]
    pub column_labels: Vec<String>,
    /// Labels left of the rows.
    #[serde(default)]
    pub row_labels: Vec<String>,
    /// The tiles, row-major.
    pub tiles: Vec<TileRecord>,
}

impl MosaicRecord {
    /// Whether a PNG's JSON is a mosaic's rather than a single picture's recipe.
    pub fn is_mosaic_json(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| {
                v.get("kind")
                    .and_then(|k| k.as_str().map(|k| k == MOSAIC_KIND))
            })
            .unwrap_or(false)
    }

    /// Parses a mosaic's JSON, refusing versions this build does not know.
    pub fn from_json(text: &str) -> Result<Self> {
        let record: Self = serde_json::from_str(text).context("not a mosaic record")?;
        if record.kind != MOSAIC_KIND {
            bail!("not a mosaic record (kind {:?})", record.kind);
        }
        if record.version > MOSAIC_VERSION {
            bail!(
                "mosaic version {} is newer than this program understands ({MOSAIC_VERSION})",
                record.version
            );
        }
        Ok(record)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A tile by `"ROW,COLUMN"` or by its row-major index `"N"`.
    pub fn tile(&self, which: &str) -> Result<&TileRecord> {
        let found = match which.split_once(',') {
            Some((r, c)) => {
                let r: usize = r
                    .trim()
                    .parse()
                    .context("--tile ROW,COLUMN needs numbers")?;
                let c: usize = c
                    .trim()
                    .parse()
                    .context("--tile ROW,COLUMN needs numbers")?;
                self.tiles.iter().find(|t| t.row == r && t.column == c)
            }
            None => {
                let n: usize = which
                    .trim()
                    .parse()
                    .context("--tile needs INDEX or ROW,COLUMN")?;
                self.tiles.get(n)
            }
        };
        found.with_context(|| {
            format!(
                "no tile {which}: the mosaic has {} tiles in {} rows of {}",
                self.tiles.len(),
                self.rows,
                self.columns
            )
        })
    }
}

/// Cuts one tile's picture out of a mosaic's pixels (undoing the zoom).
pub fn tile_pixels(
    mosaic_rgb: &[u8],
    mosaic_width: usize,
    tile: &TileRecord,
    zoom: usize,
) -> Vec<u8> {
    let zoom = zoom.max(1);
    let mut out = Vec::with_capacity(tile.width * tile.height * 3);
    for y in 0..tile.height {
        for x in 0..tile.width {
            let i = ((tile.y + y * zoom) * mosaic_width + tile.x + x * zoom) * 3;
            out.extend_from_slice(mosaic_rgb.get(i..i + 3).unwrap_or(&[0, 0, 0]));
        }
    }
    out
}
