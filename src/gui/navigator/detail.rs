//! Tiles shown as pictures outside the canvas: a row or grid of them (the line's strip, the
//! random gallery) and one tile opened large in a window with its recipe.

use egui::{Color32, Rect, Sense, Stroke, StrokeKind, Ui, Vec2};

use super::canvas::island_colour;
use super::tiles::Tile;

/// The side of a tile opened large, in points.
const LARGE_SIDE: f32 = 256.0;

/// How many of a tile's highest scores the large view lists.
const TOP_SCORES: usize = 3;

/// One place in a strip or gallery: its label, its tile once made, its score.
pub struct Slot<'a> {
    /// The label under the picture (t, or the seed).
    pub label: String,
    /// The tile, once it has come.
    pub tile: Option<&'a Tile>,
    /// The tile's score for the concept the panel follows.
    pub score: Option<f32>,
}

/// Draws `slots` as a grid of `columns` tiles of `side` points, each labelled; returns the
/// index of the slot clicked (made tiles only).
pub fn tiles_grid_ui(ui: &mut Ui, slots: &[Slot<'_>], columns: usize, side: f32) -> Option<usize> {
    let mut clicked = None;
    let full = Rect::from_min_max(egui::Pos2::ZERO, egui::pos2(1.0, 1.0));
    let visuals = ui.visuals().clone();
    for (row, chunk) in slots.chunks(columns.max(1)).enumerate() {
        ui.horizontal(|ui| {
            for (column, slot) in chunk.iter().enumerate() {
                let index = row * columns.max(1) + column;
                ui.vertical(|ui| {
                    let (rect, response) =
                        ui.allocate_exact_size(Vec2::splat(side), Sense::click());
                    match slot.tile.and_then(Tile::texture) {
                        Some(texture) => {
                            ui.painter().image(texture.id(), rect, full, Color32::WHITE);
                        }
                        None => {
                            ui.painter().rect_stroke(
                                rect.shrink(1.0),
                                2.0,
                                Stroke::new(1.0, visuals.weak_text_color()),
                                StrokeKind::Inside,
                            );
                        }
                    }
                    let mut label = slot.label.clone();
                    if let Some(score) = slot.score {
                        // A bar under the picture: as wide as the score, coloured like the island.
                        let bar = Rect::from_min_size(
                            rect.left_bottom() - Vec2::new(0.0, 4.0),
                            Vec2::new(side * score.clamp(0.0, 1.0), 4.0),
                        );
                        ui.painter()
                            .rect_filled(bar, 0.0, island_colour(score).to_opaque());
                        label.push_str(&format!(", {score:.2}"));
                    }
                    ui.small(&label);
                    // Named for screen readers (and tests): "tile t=0.5, 0.93".
                    let made = slot.tile.is_some();
                    response.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::Button, made, format!("tile {label}"))
                    });
                    let response = response.on_hover_text(match slot.tile {
                        Some(t) => format!("{label}: click to open\n{}", t.recipe.prompt),
                        None => format!("{label}: not made yet"),
                    });
                    if response.clicked() && slot.tile.is_some() {
                        clicked = Some(index);
                    }
                });
            }
        });
    }
    clicked
}

/// What the large view asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailAction {
    /// Copy the recipe JSON.
    CopyRecipe,
    /// Make the picture in the picture tab.
    OpenInPicture,
}

/// The tile opened large, in a window: the picture, where it is, its highest scores, its recipe.
/// `open` turns false when the window is closed.
pub fn tile_window_ui(
    ctx: &egui::Context,
    tile: &Tile,
    place: &str,
    labels: &[String],
    open: &mut bool,
) -> Option<DetailAction> {
    let mut action = None;
    egui::Window::new("Tile")
        .id(egui::Id::unique("navigator-tile-window"))
        .open(open)
        .resizable(false)
        .default_width(LARGE_SIDE + 16.0)
        .show(ctx, |ui| {
            if let Some(texture) = tile.texture() {
                ui.add(
                    egui::Image::from_texture((texture.id(), Vec2::splat(LARGE_SIDE)))
                        .alt_text(format!("tile at {place}")),
                );
            }
            ui.label(place);
            if tile.recipe.non_finite {
                ui.colored_label(ui.visuals().error_fg_color, "the model blew up here (NaN)");
            }
            if let Some(scores) = &tile.scores {
                let mut ranked: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                let text: Vec<String> = ranked
                    .iter()
                    .take(TOP_SCORES)
                    .map(|&(i, s)| {
                        let name = labels.get(i).map_or("?", String::as_str);
                        format!("{name} {s:.2}")
                    })
                    .collect();
                ui.label(format!("meter: {}", text.join(", ")));
            }
            ui.horizontal(|ui| {
                if ui.button("Copy recipe").clicked() {
                    action = Some(DetailAction::CopyRecipe);
                }
                if ui
                    .button("Open in Picture tab")
                    .on_hover_text("make this picture again, step by step, in the Picture tab")
                    .clicked()
                {
                    action = Some(DetailAction::OpenInPicture);
                }
            });
            egui::CollapsingHeader::new("Recipe")
                .default_open(false)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .max_height(220.0)
                        .show(ui, |ui| {
                            ui.monospace(tile.recipe.to_json());
                        });
                });
        });
    action
}
