//! The navigator's strip modes: a line from one prompt to another (and beyond), and a gallery
//! of random points of interconcept space, each drawn as a grid of tiles.

use egui::{DragValue, Ui};

use super::super::navigator::controls::{MAX_BEYOND, MAX_GALLERY, MAX_LINE_POINTS, Mode};
use super::super::navigator::detail::{Slot, tiles_grid_ui};
use super::super::navigator::recipes::{gallery_tiles, layout_mosaic, line_tiles};
use super::super::navigator::status::status_ui;
use super::super::navigator::tiles::{Asked, Purpose};
use super::super::panels::{PanelContext, Request};
use super::NavigatorPanel;
use crate::engine::scoring::label_in;
use crate::navigator::Layout;
use crate::recipe::Recipe;

impl NavigatorPanel {
    pub(super) fn strip_ui(
        &mut self,
        ui: &mut Ui,
        cx: &PanelContext<'_>,
        template: &Recipe,
        labels: &[String],
        requests: &mut Vec<Request>,
    ) {
        let mut make = false;
        let is_line = self.controls.mode == Mode::Line;
        let concept;
        if is_line {
            let line = &mut self.controls.line;
            ui.horizontal(|ui| {
                let hint = format!("from: {}", template.prompt);
                ui.add(
                    egui::TextEdit::singleline(&mut line.from)
                        .hint_text(hint)
                        .desired_width(130.0),
                );
                ui.add(
                    egui::TextEdit::singleline(&mut line.to)
                        .hint_text("to")
                        .desired_width(130.0),
                );
                let points = ui.label("points");
                ui.add(DragValue::new(&mut line.points).range(2..=MAX_LINE_POINTS))
                    .labelled_by(points.id);
                let beyond = ui.label("beyond");
                ui.add(
                    DragValue::new(&mut line.beyond)
                        .range(0.0..=MAX_BEYOND)
                        .speed(0.05),
                )
                .labelled_by(beyond.id)
                .on_hover_text("how far past each end, in lengths of the line");
                ui.checkbox(&mut line.slerp, "slerp");
                make = ui.button("Make line").clicked();
            });
            let from = if line.from.trim().is_empty() {
                &template.prompt
            } else {
                &line.from
            };
            concept = label_in(labels, from);
        } else {
            let gallery = &mut self.controls.gallery;
            ui.horizontal(|ui| {
                let count = ui.label("count");
                ui.add(DragValue::new(&mut gallery.count).range(1..=MAX_GALLERY))
                    .labelled_by(count.id);
                let seed = ui.label("first seed");
                ui.add(DragValue::new(&mut gallery.first_seed))
                    .labelled_by(seed.id);
                make = ui.button("Make gallery").clicked();
            });
            egui::CollapsingHeader::new("Reference prompts (their statistics shape the points)")
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .max_height(120.0)
                        .show(ui, |ui| {
                            ui.text_edit_multiline(&mut gallery.reference);
                        });
                });
            concept = None;
        }
        let layout: anyhow::Result<Layout> = if is_line {
            line_tiles(template, &self.controls.line)
        } else {
            gallery_tiles(template, &self.controls.gallery)
        };
        let (cancel, export) = status_ui(
            ui,
            cx,
            &self.jobs,
            !self.tiles.is_empty(),
            self.notice.as_ref(),
        );
        let layout = match layout {
            Ok(layout) => layout,
            Err(error) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("{error:#}"));
                return;
            }
        };
        let made: Vec<_> = layout
            .tiles
            .iter()
            .map(|t| self.tiles.find(&t.recipe))
            .collect();
        let slots: Vec<Slot<'_>> = layout
            .tiles
            .iter()
            .zip(&made)
            .map(|(slot, tile)| {
                let mut label = if is_line {
                    format!("t={}", slot.label)
                } else {
                    slot.label.clone()
                };
                // The gallery names what the meter sees in each random point.
                if !is_line && let Some(scores) = tile.and_then(|t| t.scores.as_ref()) {
                    let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
                    if let Some((i, _)) = best
                        && let Some(name) = labels.get(i)
                    {
                        label = format!("{label} {name}");
                    }
                }
                Slot {
                    label,
                    tile: *tile,
                    score: tile.and_then(|t| t.score(concept)),
                }
            })
            .collect();
        let clicked = egui::ScrollArea::both()
            .show(ui, |ui| {
                let (columns, side) = if is_line {
                    (slots.len(), 96.0)
                } else {
                    (layout.columns, 80.0)
                };
                tiles_grid_ui(ui, &slots, columns, side)
            })
            .inner;
        if let Some(index) = clicked {
            self.open = made[index].map(|t| t.recipe.clone());
        }
        let export = export.then(|| layout_mosaic(&layout, &made));
        drop(slots);
        if make {
            let recipes: Vec<Recipe> = layout
                .tiles
                .iter()
                .map(|t| t.recipe.clone())
                .filter(|r| self.tiles.find(r).is_none())
                .collect();
            if recipes.is_empty() {
                self.notice = Some(("every tile is made already".into(), false));
            } else {
                let purpose = if is_line {
                    Purpose::Line
                } else {
                    Purpose::Gallery
                };
                let sides = vec![0.0; recipes.len()];
                requests.push(self.jobs.ask(Asked {
                    purpose,
                    recipes,
                    sides,
                }));
            }
        }
        self.finish(cancel, export, requests);
    }
}
