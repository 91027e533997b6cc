//! An RGB8 canvas with the few drawing operations a mosaic needs: rectangles, pictures scaled
//! by whole numbers, and text in the monospaced font egui ships (Hack), rasterised by ab_glyph.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use anyhow::{Context, Result};

/// RGB8 pixels, row-major.
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGB8.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with one colour.
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        Self {
            width,
            height,
            rgb: fill.repeat(width * height),
        }
    }

    /// Copies a picture with its top-left corner at (x, y), each pixel as a `zoom` x `zoom`
    /// block; what falls outside the canvas is cut off.
    pub fn blit(
        &mut self,
        x: usize,
        y: usize,
        width: usize,
        height: usize,
        rgb: &[u8],
        zoom: usize,
    ) {
        let zoom = zoom.max(1);
        for py in 0..height * zoom {
            let cy = y + py;
            if cy >= self.height {
                break;
            }
            for px in 0..width * zoom {
                let cx = x + px;
                if cx >= self.width {
                    break;
                }
                let src = ((py / zoom) * width + px / zoom) * 3;
                let dst = (cy * self.width + cx) * 3;
                if let (Some(s), Some(d)) = (rgb.get(src..src + 3), self.rgb.get_mut(dst..dst + 3))
                {
                    d.copy_from_slice(s);
                }
            }
        }
    }

    /// Blends a colour into one pixel with coverage in [0, 1]; outside the canvas, nothing.
    fn blend(&mut self, x: i64, y: i64, colour: [u8; 3], coverage: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        let a = coverage.clamp(0.0, 1.0);
        for (c, &target) in self.rgb[i..i + 3].iter_mut().zip(&colour) {
            *c = (f32::from(*c) * (1.0 - a) + f32::from(target) * a).round() as u8;
        }
    }
}

/// Text in egui's built-in monospaced font.
pub struct TextPainter {
    font: FontRef<'static>,
}

impl TextPainter {
    /// The painter over the font bytes that ship with egui.
    pub fn new() -> Result<Self> {
        let font = FontRef::try_from_slice(epaint_default_fonts::HACK_REGULAR)
            .context("egui's built-in font did not parse")?;
        Ok(Self { font })
    }

    /// Width of a line of text at `px` pixels per em, rounded up.
    pub fn width(&self, text: &str, px: f32) -> usize {
        let scaled = self.font.as_scaled(PxScale::from(px));
        let mut width = 0.0;
        let mut previous = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                width += scaled.kern(p, id);
            }
            width += scaled.h_advance(id);
            previous = Some(id);
        }
        width.ceil() as usize
    }

    /// Height of a line of text at `px` pixels per em (ascent plus descent), rounded up.
    pub fn line_height(&self, px: f32) -> usize {
        let scaled = self.font.as_scaled(PxScale::from(px));
        (scaled.ascent() - scaled.descent()).ceil() as usize
    }

    /// Draws a line of text with the top of its line box at (x, y).
    pub fn draw(
        &self,
        canvas: &mut Canvas,
        text: &str,
        x: usize,
        y: usize,
        px: f32,
        colour: [u8; 3],
    ) {
        let scaled = self.font.as_scaled(PxScale::from(px));
        let baseline = y as f32 + scaled.ascent();
        let mut caret = x as f32;
        let mut previous = None;
        for c in text.chars() {
            let mut glyph = scaled.scaled_glyph(c);
            if let Some(p) = previous {
                caret += scaled.kern(p, glyph.id);
            }
            previous = Some(glyph.id);
            let advance = scaled.h_advance(glyph.id);
            glyph.position = point(caret, baseline);
            caret += advance;
            if let Some(outlined) = self.font.outline_glyph(glyph) {
                let bounds = outlined.px_bounds();
                outlined.draw(|gx, gy, coverage| {
                    canvas.blend(
                        bounds.min.x as i64 + i64::from(gx),
                        bounds.min.y as i64 + i64::from(gy),
                        colour,
                        coverage,
                    );
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_leaves_ink_where_it_is_drawn_and_nowhere_else() {
        let painter = TextPainter::new().unwrap();
        let mut canvas = Canvas::new(60, 20, [0, 0, 0]);
        painter.draw(&mut canvas, "u=1.5", 2, 2, 11.0, [255, 255, 255]);
        let ink: usize = canvas.rgb.iter().map(|&c| usize::from(c > 0)).sum();
        assert!(ink > 30, "only {ink} inked values");
        let right_edge = painter.width("u=1.5", 11.0) + 4;
        for y in 0..20 {
            for x in right_edge..60 {
                assert_eq!(canvas.rgb[(y * 60 + x) * 3], 0, "ink at ({x}, {y})");
            }
        }
        assert!(painter.width("mmmm", 11.0) > painter.width("mm", 11.0));
        assert!(painter.line_height(11.0) >= 11);
    }

    #[test]
    fn blit_zooms_by_whole_pixels_and_clips() {
        let mut canvas = Canvas::new(5, 5, [9, 9, 9]);
        canvas.blit(3, 3, 2, 1, &[1, 2, 3, 4, 5, 6], 2);
        assert_eq!(
            &canvas.rgb[(3 * 5 + 3) * 3..(3 * 5 + 3) * 3 + 3],
            &[1, 2, 3]
        );
        assert_eq!(
            &canvas.rgb[(4 * 5 + 4) * 3..(4 * 5 + 4) * 3 + 3],
            &[1, 2, 3]
        );
        assert_eq!(&canvas.rgb[0..3], &[9, 9, 9]);
    }
}
