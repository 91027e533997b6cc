//! Mosaics: one PNG from a grid of pictures, with a title, axis values and tile labels, that
//! carries every tile's recipe.
//!
//! The PNG's text chunk (the same one single pictures use for their recipe) holds a
//! [`MosaicRecord`]: the title, the grid's shape, and for each tile where it sits in the image
//! and its full [`Recipe`]. Tiles are the pictures' own pixels (enlarged by a whole-number zoom
//! when asked), so a tile cut out of the mosaic equals the picture its recipe makes.

mod canvas;
mod record;

use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

pub use canvas::{Canvas, TextPainter};
pub use record::{MosaicRecord, TileRecord, tile_pixels};

use crate::engine::pipeline::Picture;
use crate::recipe::{self, Recipe};

/// What the `kind` field of a mosaic's JSON says.
pub const MOSAIC_KIND: &str = "interconcept-mosaic";

/// The mosaic schema version this build writes and reads.
pub const MOSAIC_VERSION: u32 = 1;

/// Font size of labels and axis values, in pixels per em.
const LABEL_PX: f32 = 11.0;

/// Font size of the title.
const TITLE_PX: f32 = 13.0;

/// Space around everything and between text and tiles.
const MARGIN: usize = 4;

/// The most pixels a mosaic may have (about 800 MB of RGB).
pub const MAX_PIXELS: usize = 1 << 28;

const BACKGROUND: [u8; 3] = [24, 24, 24];
const INK: [u8; 3] = [230, 230, 230];

/// Where tile labels go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelPlace {
    /// Below each tile.
    #[default]
    Under,
    /// Above each tile.
    Over,
    /// Not drawn.
    None,
}

/// How a mosaic looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MosaicStyle {
    /// Pixels between cells.
    pub gap: usize,
    /// Each picture pixel becomes `zoom` x `zoom` mosaic pixels.
    pub zoom: usize,
    /// Where tile labels go.
    pub labels: LabelPlace,
}

impl Default for MosaicStyle {
    fn default() -> Self {
        Self {
            gap: 2,
            zoom: 1,
            labels: LabelPlace::Under,
        }
    }
}

/// One tile to lay out.
#[derive(Debug, Clone)]
pub struct MosaicTile {
    /// The picture.
    pub picture: Picture,
    /// A short label; may be empty.
    pub label: String,
    /// What makes the picture.
    pub recipe: Recipe,
}

/// A grid of tiles to draw.
#[derive(Debug, Clone)]
pub struct Mosaic {
    /// One line over everything; may be empty.
    pub title: String,
    /// Tiles per row.
    pub columns: usize,
    /// A label above each column, or none.
    pub column_labels: Vec<String>,
    /// A label left of each row, or none.
    pub row_labels: Vec<String>,
    /// The label where row and column labels meet.
    pub corner_label: String,
    /// The tiles, row-major.
    pub tiles: Vec<MosaicTile>,
    /// Gaps, zoom and labels.
    pub style: MosaicStyle,
}

/// Refuses grids whose mosaic would exceed [`MAX_PIXELS`], before any picture is made.
pub fn check_size(
    columns: usize,
    rows: usize,
    tile_w: usize,
    tile_h: usize,
    style: &MosaicStyle,
) -> Result<()> {
    let cell = |side: usize| {
        side.saturating_mul(style.zoom.max(1))
            .saturating_add(style.gap)
    };
    let pixels = columns
        .saturating_mul(cell(tile_w))
        .saturating_mul(rows.saturating_mul(cell(tile_h)));
    if pixels > MAX_PIXELS {
        bail!(
            "the mosaic would have {pixels} pixels, more than {MAX_PIXELS}; use fewer tiles, \
             smaller pictures or a smaller --zoom"
        );
    }
    Ok(())
}

impl Mosaic {
    /// Draws the mosaic; returns its pixels and its record.
    pub fn render(&self) -> Result<(Canvas, MosaicRecord)> {
        if self.columns == 0 || self.tiles.is_empty() {
            bail!("a mosaic needs at least one tile and one column");
        }
        let rows = self.tiles.len().div_ceil(self.columns);
        let tile_w = self
            .tiles
            .iter()
            .map(|t| t.picture.width)
            .max()
            .unwrap_or(0);
        let tile_h = self
            .tiles
            .iter()
            .map(|t| t.picture.height)
            .max()
            .unwrap_or(0);
        check_size(self.columns, rows, tile_w, tile_h, &self.style)?;
        let painter = TextPainter::new()?;
        let zoom = self.style.zoom.max(1);
        let gap = self.style.gap;
        let text_w = |t: &str| painter.width(t, LABEL_PX);
        let label_h = painter.line_height(LABEL_PX);

        // Cells are as large as the largest tile, or its label if wider.
        let (tile_w, tile_h) = (tile_w * zoom, tile_h * zoom);
        let labelled =
            self.style.labels != LabelPlace::None && self.tiles.iter().any(|t| !t.label.is_empty());
        let label_band = if labelled { label_h + 1 } else { 0 };
        let widest_label = self
            .tiles
            .iter()
            .map(|t| text_w(&t.label))
            .max()
            .unwrap_or(0);
        let widest_column = self
            .column_labels
            .iter()
            .map(|t| text_w(t))
            .max()
            .unwrap_or(0);
        let cell_w = tile_w
            .max(if labelled { widest_label + 2 } else { 0 })
            .max(widest_column + 2);
        let cell_h = tile_h + label_band;

        // Bands around the grid: title, column labels above, row labels to the left.
        let title_h = if self.title.is_empty() {
            0
        } else {
            painter.line_height(TITLE_PX) + MARGIN
        };
        let columns_h = if self.column_labels.is_empty() {
            0
        } else {
            label_h + 2
        };
        let rows_w = if self.row_labels.is_empty() {
            0
        } else {
            let widest = self.row_labels.iter().map(|t| text_w(t)).max().unwrap_or(0);
            widest.max(text_w(&self.corner_label)) + MARGIN
        };
        let (x0, y0) = (MARGIN + rows_w, MARGIN + title_h + columns_h);
        let grid_w = self.columns * cell_w + (self.columns - 1) * gap;
        let grid_h = rows * cell_h + (rows - 1) * gap;
        let title_w = painter.width(&self.title, TITLE_PX);
        let width = (x0 + grid_w + MARGIN).max(title_w + 2 * MARGIN);
        let height = y0 + grid_h + MARGIN;
        let mut canvas = Canvas::new(width, height, BACKGROUND);

        painter.draw(&mut canvas, &self.title, MARGIN, MARGIN, TITLE_PX, INK);
        let label_y = MARGIN + title_h;
        if !self.row_labels.is_empty() && !self.column_labels.is_empty() {
            painter.draw(
                &mut canvas,
                &self.corner_label,
                MARGIN,
                label_y,
                LABEL_PX,
                INK,
            );
        }
        for (c, label) in self.column_labels.iter().enumerate().take(self.columns) {
            let x = x0 + c * (cell_w + gap) + (cell_w.saturating_sub(text_w(label))) / 2;
            painter.draw(&mut canvas, label, x, label_y, LABEL_PX, INK);
        }

        let mut tiles = Vec::with_capacity(self.tiles.len());
        for (index, tile) in self.tiles.iter().enumerate() {
            let (row, column) = (index / self.columns, index % self.columns);
            let (cell_x, cell_y) = (x0 + column * (cell_w + gap), y0 + row * (cell_h + gap));
            let p = &tile.picture;
            let x = cell_x + (cell_w - p.width * zoom) / 2;
            let (y, text_y) = match self.style.labels {
                LabelPlace::Over => (cell_y + label_band, cell_y),
                _ => (cell_y, cell_y + tile_h + 1),
            };
            canvas.blit(x, y, p.width, p.height, &p.rgb, zoom);
            if labelled {
                let text_x = cell_x + (cell_w.saturating_sub(text_w(&tile.label))) / 2;
                painter.draw(&mut canvas, &tile.label, text_x, text_y, LABEL_PX, INK);
            }
            if column == 0
                && let Some(label) = self.row_labels.get(row)
            {
                let text_x = x0.saturating_sub(MARGIN + text_w(label));
                let text_y = y + (p.height * zoom).saturating_sub(label_h) / 2;
                painter.draw(&mut canvas, label, text_x, text_y, LABEL_PX, INK);
            }
            tiles.push(TileRecord {
                row,
                column,
                x,
                y,
                width: p.width,
                height: p.height,
                label: tile.label.clone(),
                recipe: tile.recipe.clone(),
            });
        }
        let record = MosaicRecord {
            kind: MOSAIC_KIND.into(),
            version: MOSAIC_VERSION,
            title: self.title.clone(),
            rows,
            columns: self.columns,
            zoom,
            column_labels: self.column_labels.clone(),
            row_labels: self.row_labels.clone(),
            tiles,
        };
        Ok((canvas, record))
    }

    /// Draws the mosaic and writes it as PNG with its record inside, atomically.
    pub fn write(&self, path: &Path) -> Result<MosaicRecord> {
        let (canvas, record) = self.render()?;
        recipe::write_png_rgb(
            path,
            canvas.width,
            canvas.height,
            &canvas.rgb,
            &record.to_json(),
        )?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests;
