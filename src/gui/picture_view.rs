//! The picture area: one texture that the streamed previews and the finished picture update in
//! place, drawn at a fixed display size so the picture does not jump while it forms.

use egui::{ColorImage, TextureHandle, TextureOptions, Vec2};

/// The side of the square the picture is fitted into, in points.
pub const DISPLAY_SIDE: f32 = 384.0;

/// The texture's name in egui's texture manager.
const TEXTURE_NAME: &str = "interconcept-picture";

/// What the texture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownKind {
    /// A preview of the picture in progress (latent resolution).
    Preview,
    /// A finished, decoded picture.
    Finished,
}

/// What the texture holds and its size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// Preview or finished picture.
    pub kind: ShownKind,
    /// Width and height in pixels.
    pub size: [usize; 2],
}

/// The picture texture, created once and updated with [`TextureHandle::set`].
#[derive(Default)]
pub struct PictureView {
    texture: Option<TextureHandle>,
    shown: Option<Shown>,
}

impl PictureView {
    /// Uploads RGB8 pixels. Pixels that do not match the size are refused rather than handed to
    /// egui, which would panic on them.
    pub fn show_rgb(
        &mut self,
        ctx: &egui::Context,
        kind: ShownKind,
        size: [usize; 2],
        rgb: &[u8],
    ) -> Result<(), String> {
        let [width, height] = size;
        if width == 0
            || height == 0
            || width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(rgb.len())
        {
            return Err(format!(
                "picture of {width}x{height} pixels came with {} bytes, expected RGB8",
                rgb.len()
            ));
        }
        let image = ColorImage::from_rgb(size, rgb);

        // Nearest sampling: the previews are a few latent cells wide, and blurring them would
        // hide exactly what the preview is for.
        let options = TextureOptions::NEAREST;
        match &mut self.texture {
            Some(texture) => texture.set(image, options),
            None => self.texture = Some(ctx.load_texture(TEXTURE_NAME, image, options)),
        }
        self.shown = Some(Shown { kind, size });
        Ok(())
    }

    /// What the texture holds, if anything.
    pub fn shown(&self) -> Option<Shown> {
        self.shown
    }

    /// Draws the picture fitted into a [`DISPLAY_SIDE`] square, aspect kept.
    pub fn picture_ui(&self, ui: &mut egui::Ui) {
        self.fitted_ui(ui, DISPLAY_SIDE);
    }

    /// Draws the picture fitted into a square of `side` points, aspect kept; returns where the
    /// picture (or the empty square) went.
    pub fn fitted_ui(&self, ui: &mut egui::Ui, side: f32) -> egui::Rect {
        let square = Vec2::splat(side);
        let (rect, _) = ui.allocate_exact_size(square, egui::Sense::hover());
        match (&self.texture, self.shown) {
            (Some(texture), Some(shown)) => {
                let [width, height] = shown.size;
                let scale = side / width.max(height) as f32;
                let size = Vec2::new(width as f32 * scale, height as f32 * scale);
                let alt = match shown.kind {
                    ShownKind::Preview => "preview of the picture in progress",
                    ShownKind::Finished => "finished picture",
                };
                let image = egui::Image::from_texture((texture.id(), size))
                    .fit_to_exact_size(size)
                    .alt_text(alt);
                let placed = egui::Rect::from_center_size(rect.center(), size);
                ui.put(placed, image);
                placed
            }
            _ => {
                let visuals = ui.visuals();
                ui.painter()
                    .rect_filled(rect, 4.0, visuals.extreme_bg_color);
                ui.painter().text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "no picture yet",
                    egui::FontId::proportional(14.0),
                    visuals.weak_text_color(),
                );
                rect
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_update_one_texture_and_bad_sizes_are_refused() {
        let ctx = egui::Context::default();
        let mut view = PictureView::default();
        view.show_rgb(&ctx, ShownKind::Preview, [2, 2], &[0; 12])
            .expect("a 2x2 preview");
        let first = view.texture.as_ref().map(TextureHandle::id);
        view.show_rgb(&ctx, ShownKind::Finished, [4, 2], &[255; 24])
            .expect("a 4x2 picture");
        assert_eq!(view.texture.as_ref().map(TextureHandle::id), first);
        assert_eq!(
            view.shown(),
            Some(Shown {
                kind: ShownKind::Finished,
                size: [4, 2]
            })
        );

        assert!(
            view.show_rgb(&ctx, ShownKind::Preview, [3, 3], &[0; 12])
                .is_err()
        );
        assert!(
            view.show_rgb(&ctx, ShownKind::Preview, [0, 0], &[])
                .is_err()
        );
        assert_eq!(view.shown().map(|s| s.size), Some([4, 2]));
    }
}
