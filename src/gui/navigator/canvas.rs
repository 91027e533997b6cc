//! The plane canvas: the (u, v) plane with its axes and ticks, the tiles made on it, the ones
//! on their way, and the island's colours and shore. Scroll (or pinch) zooms about the
//! pointer, dragging pans, a click asks for a point or opens the tile under it.
//!
//! The island is drawn one of two ways. With a [`FieldTexture`] (eframe renders with wgpu), a
//! paint callback draws the scores of the fill's lattice as a smooth field with its shore
//! (`shaders/score_field.wgsl`), and only tiles off that lattice get a colour of their own.
//! Without one, every scored tile gets a flat colour and the shore is the marching-squares
//! segments the panel measured.

use eframe::egui_wgpu;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Ui, Vec2};

use super::score_field::gpu::ScoreFieldCallback;
use super::score_field::{FieldTexture, INSIDE, OUTSIDE, SHORE, SHORE_WIDTH};
use super::tiles::Tile;
use super::view::{PlaneView, format_tick, ticks};
use crate::navigator::island::{ISLAND_THRESHOLD, Segment};

/// Room a u tick label needs to the right of its line, and the height of the row of u labels
/// along the bottom edge, in screen points.
const TICK_LABEL_ROOM: f32 = 28.0;
const TICK_LABEL_HEIGHT: f32 = 16.0;

/// Screen points per tick, roughly: ticks are not drawn closer than this.
const TICK_SPACING: f32 = 70.0;

/// How fast the scroll wheel zooms: the factor per point of scroll is `exp(1 / this)`.
const SCROLL_PER_E: f32 = 200.0;

/// A tile placed on the canvas.
pub struct PlacedTile<'a> {
    /// Its (u, v).
    pub at: [f64; 2],
    /// The side of the square it covers, in plane units.
    pub side: f64,
    /// The tile.
    pub tile: &'a Tile,
    /// Its score for the island's concept.
    pub score: Option<f32>,
}

/// What the canvas draws besides the tiles.
pub struct Overlay<'a> {
    /// Points asked for and not made yet, with their sides.
    pub pending: &'a [([f64; 2], f64)],
    /// Colour tiles by score and draw the shore.
    pub island: bool,
    /// The island's shore, drawn with egui shapes when there is no `field`.
    pub shore: &'a [Segment],
    /// The scores of the fill's lattice, drawn on the GPU; `None` without a wgpu renderer.
    pub field: Option<&'a FieldTexture>,
    /// The unit of u and v, in words.
    pub unit: &'a str,
}

/// What a click on the canvas asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CanvasClick {
    /// A picture at this (u, v).
    Point([f64; 2]),
    /// The tile at this index of the placed tiles, opened large.
    Tile(usize),
}

/// What happened on the canvas this frame.
#[derive(Debug, Default)]
pub struct CanvasResponse {
    /// A click, if any.
    pub click: Option<CanvasClick>,
    /// How many tiles were drawn (with a texture, at least partly in view).
    pub drawn: usize,
}

/// The colour laid over a tile of score `score`: towards green inside the island, towards
/// magenta outside, translucent so the picture shows through.
pub fn island_colour(score: f32) -> Color32 {
    let s = score.clamp(0.0, 1.0);
    let (outside, inside) = (
        OUTSIDE.to_srgba_unmultiplied(),
        INSIDE.to_srgba_unmultiplied(),
    );
    let mix = |c: usize| {
        let (o, i) = (f32::from(outside[c]), f32::from(inside[c]));
        (o + (i - o) * s).round() as u8
    };
    Color32::from_rgba_unmultiplied(mix(0), mix(1), mix(2), outside[3])
}

/// Draws the canvas into `size` and handles its zoom, pan, hover and clicks.
pub fn plane_canvas_ui(
    ui: &mut Ui,
    size: Vec2,
    view: &mut PlaneView,
    tiles: &[PlacedTile<'_>],
    overlay: &Overlay<'_>,
) -> CanvasResponse {
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());

    // Zoom about the pointer, pan with a drag.
    if let Some(pointer) = response.hover_pos() {
        let (scroll, pinch) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
        let factor = f64::from(pinch) * f64::from((scroll / SCROLL_PER_E).exp());
        if (factor - 1.0).abs() > 1e-6 {
            view.zoom_about(rect, pointer, factor);
        }
    }
    if response.dragged() {
        view.pan(rect, response.drag_delta());
    }

    let screen_rect = |at: [f64; 2], side: f64| {
        let half = (side * view.points_per_unit(rect) / 2.0) as f32;
        Rect::from_center_size(view.to_screen(rect, at), Vec2::splat(2.0 * half))
    };
    // The tile drawn last is on top: with the GPU field, the tiles off its lattice are drawn
    // after it, over the others.
    let field = overlay.field.filter(|_| overlay.island);
    let on_field = |t: &PlacedTile<'_>| field.is_some_and(|f| f.texel_at(t.at).is_some());
    let top_under = |pos: Pos2| {
        tiles
            .iter()
            .enumerate()
            .filter(|(_, t)| screen_rect(t.at, t.side).contains(pos))
            .max_by_key(|&(i, t)| (field.is_some() && !on_field(t), i))
            .map(|(i, _)| i)
    };
    let mut click = None;
    if response.clicked()
        && let Some(pos) = response.interact_pointer_pos()
    {
        click = Some(match top_under(pos) {
            Some(index) => CanvasClick::Tile(index),
            None => CanvasClick::Point(view.to_plane(rect, pos)),
        });
    }

    let painter = ui.painter_at(rect);
    let visuals = ui.visuals().clone();
    painter.rect_filled(rect, 0.0, visuals.extreme_bg_color);

    // Grid lines and tick labels, the axes stronger.
    let [[u_lo, u_hi], [v_lo, v_hi]] = view.visible(rect);
    let weak = Stroke::new(1.0, visuals.weak_text_color().gamma_multiply(0.35));
    let axis = Stroke::new(1.5, visuals.text_color().gamma_multiply(0.6));
    let font = FontId::proportional(11.0);
    let (u_step, u_ticks) = ticks(u_lo, u_hi, (rect.width() / TICK_SPACING) as usize);
    for u in u_ticks {
        let x = view.to_screen(rect, [u, 0.0]).x;
        let stroke = if u == 0.0 { axis } else { weak };
        painter.line_segment(
            [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
            stroke,
        );
        // A label that would run past the right edge is left out rather than clipped.
        if x + TICK_LABEL_ROOM <= rect.right() {
            painter.text(
                Pos2::new(x + 2.0, rect.bottom() - 2.0),
                Align2::LEFT_BOTTOM,
                format_tick(u, u_step),
                font.clone(),
                visuals.text_color(),
            );
        }
    }
    let (v_step, v_ticks) = ticks(v_lo, v_hi, (rect.height() / TICK_SPACING) as usize);
    for v in v_ticks {
        let y = view.to_screen(rect, [0.0, v]).y;
        let stroke = if v == 0.0 { axis } else { weak };
        painter.line_segment(
            [Pos2::new(rect.left(), y), Pos2::new(rect.right(), y)],
            stroke,
        );
        // The bottom row belongs to the u labels.
        if y <= rect.bottom() - TICK_LABEL_HEIGHT {
            painter.text(
                Pos2::new(rect.left() + 2.0, y - 2.0),
                Align2::LEFT_BOTTOM,
                format_tick(v, v_step),
                font.clone(),
                visuals.text_color(),
            );
        }
    }

    // Tiles on their way, then the tiles, then the island over them.
    for &(at, side) in overlay.pending {
        let r = screen_rect(at, side).shrink(1.0);
        painter.rect_stroke(r, 2.0, weak, StrokeKind::Inside);
    }
    let mut drawn = 0;
    let full = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
    let mut draw_tile = |placed: &PlacedTile<'_>, tint: bool| {
        let r = screen_rect(placed.at, placed.side);
        if !r.intersects(rect) {
            return;
        }
        if let Some(texture) = placed.tile.texture() {
            painter.image(texture.id(), r, full, Color32::WHITE);
            drawn += 1;
        }
        if tint && let Some(score) = placed.score {
            painter.rect_filled(r, 0.0, island_colour(score));
        }
    };
    match field {
        // The lattice's tiles, the field over them, then the tiles off the lattice on top.
        Some(field) => {
            for placed in tiles.iter().filter(|t| on_field(t)) {
                draw_tile(placed, false);
            }
            painter.add(egui_wgpu::Callback::new_paint_callback(
                rect,
                ScoreFieldCallback {
                    field: field.clone(),
                    map: field.index_map(view, rect),
                },
            ));
            for placed in tiles.iter().filter(|t| !on_field(t)) {
                draw_tile(placed, true);
            }
        }
        None => {
            for placed in tiles {
                draw_tile(placed, overlay.island);
            }
            if overlay.island {
                let shore = Stroke::new(SHORE_WIDTH, SHORE);
                for [p, q] in overlay.shore {
                    painter
                        .line_segment([view.to_screen(rect, *p), view.to_screen(rect, *q)], shore);
                }
            }
        }
    }
    painter.circle_stroke(view.to_screen(rect, [0.0, 0.0]), 4.0, axis);
    painter.text(
        rect.right_top() + Vec2::new(-4.0, 4.0),
        Align2::RIGHT_TOP,
        format!("u to the right, v up, in units of {}", overlay.unit),
        font.clone(),
        visuals.weak_text_color(),
    );

    // Where the pointer is, and the score of the tile under it.
    if let Some(pos) = response.hover_pos() {
        let [u, v] = view.to_plane(rect, pos);
        let step = u_step.min(v_step) / 10.0;
        let mut text = format!("u {}, v {}", format_tick(u, step), format_tick(v, step));
        let under = top_under(pos).and_then(|i| tiles.get(i));
        if let Some(score) = under.and_then(|t| t.score) {
            let verdict = if f64::from(score) >= ISLAND_THRESHOLD {
                "on the island"
            } else {
                "off the island"
            };
            text.push_str(&format!("; score {score:.2} ({verdict})"));
        }
        let galley = painter.layout_no_wrap(text, font, visuals.text_color());
        let at = rect.left_top() + Vec2::new(4.0, 4.0);
        painter.rect_filled(
            Rect::from_min_size(at, galley.size()).expand(3.0),
            3.0,
            visuals.window_fill.gamma_multiply(0.9),
        );
        painter.galley(at, galley, visuals.text_color());
    }

    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Canvas,
            true,
            format!("plane canvas, {drawn} tiles"),
        )
    });
    CanvasResponse { click, drawn }
}
