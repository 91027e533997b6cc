//! The navigator's plane mode: the controls of the plane through the prompt, the canvas with
//! its tiles and island, and the fills and clicks that ask for tiles.

use egui::{DragValue, Ui};

use super::super::navigator::canvas::{CanvasClick, Overlay, PlacedTile, plane_canvas_ui};
use super::super::navigator::controls::PlaneSpace;
use super::super::navigator::recipes::{
    island_field, plane_coordinates, plane_mosaic, plane_recipe, plane_title,
};
use super::super::navigator::score_field::FieldTexture;
use super::super::navigator::status::{island_report_ui, status_ui};
use super::super::navigator::tiles::{Asked, Purpose};
use super::super::navigator::view::PlaneView;
use super::super::panels::{PanelContext, Request};
use super::{MAX_FILL, MIN_CANVAS, NavigatorPanel};
use crate::engine::scoring::label_in;
use crate::navigator::island::{ISLAND_THRESHOLD, boundary, island_radii};
use crate::recipe::Recipe;

impl NavigatorPanel {
    pub(super) fn plane_ui(
        &mut self,
        ui: &mut Ui,
        cx: &PanelContext<'_>,
        template: &Recipe,
        labels: &[String],
        requests: &mut Vec<Request>,
    ) {
        let plane = &mut self.controls.plane;
        ui.horizontal(|ui| {
            for space in PlaneSpace::ALL {
                ui.selectable_value(&mut plane.space, space, space.title())
                    .on_hover_text(space.hint());
            }
        });
        ui.horizontal(|ui| {
            // A noise plane has random directions only: no prompts to point toward.
            let concept = plane.space == PlaneSpace::Concept;
            let toward = plane.is_toward();
            let mut random = !toward;
            ui.add_enabled_ui(concept, |ui| {
                if ui.radio(random, "random directions").clicked() {
                    random = true;
                }
            });
            let seed = ui.label("seed");
            ui.add_enabled(!toward, DragValue::new(&mut plane.directions_seed))
                .labelled_by(seed.id);
            ui.add_enabled_ui(concept, |ui| {
                if ui.radio(toward, "toward").clicked() {
                    random = false;
                }
            });
            if concept {
                plane.toward = !random;
            }
            for (text, hint) in [
                (&mut plane.toward_a, "prompt a (u = 1)"),
                (&mut plane.toward_b, "prompt b"),
            ] {
                ui.add_enabled(
                    toward,
                    egui::TextEdit::singleline(text)
                        .hint_text(hint)
                        .desired_width(110.0),
                );
            }
        });
        let mut fill = false;
        ui.horizontal(|ui| {
            let grid = ui.label("grid");
            ui.add(DragValue::new(&mut plane.grid).range(1..=MAX_FILL))
                .labelled_by(grid.id)
                .on_hover_text("tiles along each side of a fill");
            fill = ui
                .button("Fill")
                .on_hover_text("make a grid over the middle of the view, centre first")
                .clicked();
            if ui.button("Reset view").clicked() {
                self.view = PlaneView::default();
            }
            ui.checkbox(&mut plane.island, "Island")
                .on_hover_text("colour tiles by the meter's score and draw where it crosses 0.5");
            if plane.island && !labels.is_empty() {
                let named = label_in(labels, &template.prompt);
                let shown = plane.concept.or(named).and_then(|i| labels.get(i));
                egui::ComboBox::from_label("concept")
                    .selected_text(shown.map_or("choose a concept", String::as_str))
                    .show_ui(ui, |ui| {
                        for (i, label) in labels.iter().enumerate() {
                            ui.selectable_value(&mut plane.concept, Some(i), label);
                        }
                    });
            }
        });

        // The tiles of this plane, and the ones on their way.
        let kind = plane.kind();
        let concept = plane.concept.or_else(|| label_in(labels, &template.prompt));
        let mut placed: Vec<PlacedTile<'_>> = self
            .tiles
            .iter()
            .filter_map(|tile| {
                let at = plane_coordinates(&tile.recipe, template, &kind)?;
                let score = tile.score(concept);
                Some(PlacedTile {
                    at,
                    side: tile.side,
                    tile,
                    score,
                })
            })
            .collect();
        // Finer tiles (made zoomed in) are drawn over coarser ones.
        placed.sort_by(|a, b| b.side.total_cmp(&a.side));
        let pending: Vec<([f64; 2], f64)> = self
            .jobs
            .missing()
            .iter()
            .filter_map(|(r, side)| Some((plane_coordinates(r, template, &kind)?, *side)))
            .collect();

        // The island, on the lattice of the newest fill.
        let grid = self
            .last_grid
            .unwrap_or_else(|| self.view.fill_grid(plane.grid));
        let scored: Vec<([f64; 2], f64)> = placed
            .iter()
            .filter_map(|t| Some((t.at, f64::from(t.score?))))
            .collect();
        let field = island_field(&scored, &grid);
        let texture = match (&field, plane.island && self.gpu_field) {
            (Some(field), true) => FieldTexture::from_field(field, grid.spacing),
            _ => None,
        };
        let shore = match (&field, plane.island, &texture) {
            (Some(field), true, None) => boundary(field, ISLAND_THRESHOLD),
            _ => Vec::new(),
        };
        self.island = match (&field, concept.and_then(|i| labels.get(i))) {
            (Some(field), Some(label)) => {
                Some((label.clone(), island_radii(field, ISLAND_THRESHOLD)))
            }
            _ => None,
        };

        let (cancel, export) = status_ui(
            ui,
            cx,
            &self.jobs,
            !self.tiles.is_empty(),
            self.notice.as_ref(),
        );
        if plane.island {
            island_report_ui(ui, self.island.as_ref(), labels.is_empty(), plane.unit());
        }
        let size = ui.available_size().max(MIN_CANVAS);
        let overlay = Overlay {
            pending: &pending,
            island: plane.island,
            shore: &shore,
            field: texture.as_ref(),
            unit: plane.unit(),
        };
        let canvas = plane_canvas_ui(ui, size, &mut self.view, &placed, &overlay);
        self.drawn = canvas.drawn;

        // What the user asked for.
        let spacing = self.view.fill_grid(plane.grid).spacing;
        match canvas.click {
            Some(CanvasClick::Tile(index)) => self.open = Some(placed[index].tile.recipe.clone()),
            Some(CanvasClick::Point(at)) => {
                // The clicked point first, then what the running job still owed.
                let mut asked = Asked {
                    purpose: Purpose::Point,
                    recipes: vec![plane_recipe(template, &kind, at)],
                    sides: vec![spacing],
                };
                for (recipe, side) in self.jobs.missing() {
                    asked.recipes.push(recipe);
                    asked.sides.push(side);
                }
                requests.push(self.jobs.ask(asked));
            }
            None => {}
        }
        let export = export.then(|| {
            let [[u_lo, u_hi], [v_lo, v_hi]] = self.view.visible(ui.min_rect());
            let in_view: Vec<([f64; 2], &_)> = placed
                .iter()
                .filter(|t| (u_lo..=u_hi).contains(&t.at[0]) && (v_lo..=v_hi).contains(&t.at[1]))
                .map(|t| (t.at, t.tile))
                .collect();
            plane_mosaic(plane_title(template, &self.controls.plane), &in_view)
        });
        drop(placed);
        if fill {
            let grid = self.view.fill_grid(self.controls.plane.grid);
            let recipes: Vec<Recipe> = grid
                .points_centre_first()
                .into_iter()
                .map(|at| plane_recipe(template, &kind, at))
                .filter(|r| self.tiles.find(r).is_none())
                .collect();
            self.last_grid = Some(grid);
            if recipes.is_empty() {
                self.notice = Some(("every tile of this grid is made already".into(), false));
            } else {
                let sides = vec![grid.spacing; recipes.len()];
                requests.push(self.jobs.ask(Asked {
                    purpose: Purpose::Fill,
                    recipes,
                    sides,
                }));
            }
        }
        self.finish(cancel, export, requests);
    }
}
