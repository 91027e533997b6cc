//! Drawing the alien-minds tab's picture, sliders, sequence strip with its concept plot, and
//! module sweep grid; the buttons report [`RunAction`]s for the panel to carry out.

use egui::{Color32, Rect, TextureHandle, TextureOptions, Ui, Vec2};
use egui_plot::{HLine, Line, Plot, PlotPoints, Points, VLine};

use super::controls::{EditKind, MindControls, Slider};
use super::sequence::{LOST_BELOW, SequenceRun, SequenceSpec};
use super::sweep::{INTACT_LABEL, SweepRun, SweepSpec};
use super::tiles::{RunStatus, TileResult, TileSet};
use super::tree_ui::TreeState;
use crate::engine::model::Component;
use crate::gui::panels::PanelContext;
use crate::mosaic::{Mosaic, MosaicStyle, MosaicTile};
use crate::sweep::short_module_label;

/// The side of the picture the settings make, in points.
const PICTURE_SIDE: f32 = 192.0;

/// The side of a sequence tile, in points.
const SEQUENCE_TILE: f32 = 64.0;

/// The side of a sweep tile, in points.
const SWEEP_TILE: f32 = 56.0;

/// The height of the concept plot, in points.
const PLOT_HEIGHT: f32 = 150.0;

/// Mosaic tiles are enlarged to about this many pixels, so their labels fit.
const MOSAIC_TILE_PX: usize = 96;

/// Sweep mosaics have this many columns at most.
const SWEEP_COLUMNS: usize = 8;

/// What a button of the sequence or sweep asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    /// Make the sequence of the spec.
    RunSequence,
    /// Sweep the modules the tree shows.
    RunSweep,
    /// Ask again for the sweep tiles that have not come.
    ResumeSweep,
    /// Stop the sweep.
    CancelSweep,
    /// Save the sequence as a mosaic.
    ExportSequence,
    /// Save the sweep as a mosaic.
    ExportSweep,
}

/// One texture per tile that came, made the first time the tile is drawn.
#[derive(Default)]
pub struct TileTextures {
    textures: Vec<Option<TextureHandle>>,
}

impl TileTextures {
    /// Forgets every texture (the tiles are a new grid).
    pub fn clear(&mut self) {
        self.textures.clear();
    }

    fn get(&mut self, ctx: &egui::Context, set: &TileSet, index: usize) -> Option<TextureHandle> {
        if self.textures.len() < set.results.len() {
            self.textures.resize(set.results.len(), None);
        }
        let result = set.results.get(index)?.as_ref()?;
        let slot = &mut self.textures[index];
        if slot.is_none() {
            let p = &result.picture;
            if p.width * p.height * 3 != p.rgb.len() || p.width == 0 {
                return None;
            }
            let image = egui::ColorImage::from_rgb([p.width, p.height], &p.rgb);
            *slot = Some(ctx.load_texture(
                format!("minds-tile-{index}"),
                image,
                TextureOptions::NEAREST,
            ));
        }
        slot.clone()
    }
}

/// Paints the mark of a picture the model blew up on: NaN or infinity came out, so the pixels
/// are a marker, not what the mind imagined.
pub fn broken_mark(ui: &Ui, rect: Rect) {
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, Color32::from_black_alpha(140));
    painter.rect_stroke(
        rect.shrink(1.0),
        0.0,
        egui::Stroke::new(2.0, Color32::RED),
        egui::StrokeKind::Inside,
    );
    let size = (rect.width() / 4.0).clamp(9.0, 22.0);
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        "NaN/inf",
        egui::FontId::proportional(size),
        Color32::from_rgb(255, 90, 90),
    );
}

/// The picture the settings make with the panel's edits, marked when it blew up.
pub fn picture_ui(ui: &mut Ui, cx: &PanelContext<'_>) {
    let rect = cx.picture.fitted_ui(ui, PICTURE_SIDE);
    let finished = cx
        .picture
        .shown()
        .is_some_and(|s| s.kind == crate::gui::picture_view::ShownKind::Finished);
    if finished && cx.last_recipe.is_some_and(|r| r.non_finite) {
        broken_mark(ui, rect);
    }
}

/// The global sliders: noise, scale and progressive knockout of one component.
pub fn sliders_ui(ui: &mut Ui, controls: &mut MindControls, num_modules: usize) {
    ui.horizontal(|ui| {
        let label = ui.strong("The whole");
        egui::ComboBox::from_id_salt("minds-global-component")
            .selected_text(controls.global_component.name())
            .show_ui(ui, |ui| {
                for component in Component::ALL {
                    ui.selectable_value(
                        &mut controls.global_component,
                        component,
                        component.name(),
                    );
                }
            })
            .response
            .labelled_by(label.id);
    });
    ui.add(egui::Slider::new(&mut controls.noise_percent, 0.0..=100.0).text("noise %"))
        .on_hover_text("Mix this much seeded noise into every weight");
    ui.add(egui::DragValue::new(&mut controls.noise_seed).prefix("noise seed "));
    ui.add(
        egui::Slider::new(
            &mut controls.scale_percent,
            0.0..=super::controls::MAX_SCALE_PERCENT,
        )
        .text("scale %"),
    )
    .on_hover_text("Multiply every weight (100% leaves them as trained)");
    controls.progressive_count = controls.progressive_count.min(num_modules);
    ui.add(egui::Slider::new(&mut controls.progressive_count, 0..=num_modules).text("knocked out"))
        .on_hover_text("Knock out this many modules, in a random order fixed by the seed");
    ui.add(egui::DragValue::new(&mut controls.progressive_seed).prefix("order seed "));
    if ui
        .button("Heal")
        .on_hover_text("Untick everything, sliders back")
        .clicked()
    {
        controls.reset();
    }
}

/// A tile with its label under it; hovering shows the full label and score.
fn tile_ui(
    ui: &mut Ui,
    texture: Option<TextureHandle>,
    result: Option<&TileResult>,
    label: &str,
    side: f32,
) {
    ui.vertical(|ui| {
        ui.set_width(side);
        let (rect, response) = ui.allocate_exact_size(Vec2::splat(side), egui::Sense::hover());
        match &texture {
            Some(texture) => {
                egui::Image::from_texture((texture.id(), Vec2::splat(side))).paint_at(ui, rect);
            }
            None => {
                ui.painter()
                    .rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
            }
        }
        if result.is_some_and(|r| r.recipe.non_finite) {
            broken_mark(ui, rect);
        }
        let score = result.and_then(|r| r.score);
        let hover = match score {
            Some(s) => format!("{label}\nconcept score {s:.2}"),
            None => label.to_string(),
        };
        response.on_hover_text(hover);
        ui.add(egui::Label::new(egui::RichText::new(label).small()).truncate());
        if let Some(s) = score {
            ui.label(egui::RichText::new(format!("{s:.2}")).small().weak());
        }
    });
}

fn status_ui(ui: &mut Ui, set: &TileSet) {
    let total = set.results.len();
    let made = set.num_made();
    match &set.status {
        RunStatus::Idle => {}
        RunStatus::Running => {
            ui.add(
                egui::ProgressBar::new(made as f32 / total.max(1) as f32)
                    .desired_width(200.0)
                    .text(format!("{made} of {total} tiles")),
            );
        }
        RunStatus::Done => {
            ui.label(format!("{made} of {total} tiles"));
        }
        RunStatus::Cancelled => {
            ui.label(format!("stopped: {made} of {total} tiles"));
        }
        RunStatus::Failed(error) => {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("{made} of {total} tiles; failed: {error}"),
            );
        }
    }
}

/// The sequence's spec and buttons, its strip of tiles and the concept plot.
pub fn sequence_ui(
    ui: &mut Ui,
    spec: &mut SequenceSpec,
    run: &SequenceRun,
    textures: &mut TileTextures,
    score_labels: &[String],
    dialog_open: bool,
) -> Vec<RunAction> {
    let mut actions = Vec::new();
    ui.strong("Sequence");
    ui.horizontal_wrapped(|ui| {
        let before = spec.slider;
        egui::ComboBox::from_id_salt("minds-sequence-slider")
            .selected_text(spec.slider.title())
            .show_ui(ui, |ui| {
                for slider in Slider::ALL {
                    ui.selectable_value(&mut spec.slider, slider, slider.title());
                }
            })
            .response
            .on_hover_text("The slider the sequence steps through");
        if spec.slider != before {
            (spec.start, spec.step) = match spec.slider {
                Slider::Noise => (0.0, 1.0),
                Slider::Scale => (100.0, -1.0),
                Slider::Progressive => (0.0, 1.0),
            };
        }
        ui.add(
            egui::DragValue::new(&mut spec.start)
                .speed(0.1)
                .prefix("from "),
        );
        ui.add(
            egui::DragValue::new(&mut spec.step)
                .speed(0.1)
                .prefix("step "),
        );
        ui.add(
            egui::DragValue::new(&mut spec.count)
                .range(1..=super::sequence::MAX_TILES)
                .suffix(" tiles"),
        );
        if ui.button("Run sequence").clicked() {
            actions.push(RunAction::RunSequence);
        }
        let can_export = run.tiles.num_made() > 0 && !dialog_open;
        if ui
            .add_enabled(can_export, egui::Button::new("Export sequence mosaic…"))
            .clicked()
        {
            actions.push(RunAction::ExportSequence);
        }
    });
    status_ui(ui, &run.tiles);
    if run.tiles.results.is_empty() {
        return actions;
    }
    egui::ScrollArea::horizontal()
        .id_salt("minds-sequence-strip")
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                for (i, label) in run.tiles.labels.iter().enumerate() {
                    let texture = textures.get(ui.ctx(), &run.tiles, i);
                    let result = run.tiles.results[i].as_ref();
                    tile_ui(ui, texture, result, label, SEQUENCE_TILE);
                }
            });
        });
    concept_plot_ui(ui, run, score_labels);
    actions
}

/// The meter's score for the prompt's concept against the slider, and where it is lost.
fn concept_plot_ui(ui: &mut Ui, run: &SequenceRun, score_labels: &[String]) {
    let Some(concept) = &run.concept else {
        if score_labels.is_empty() {
            ui.weak("This model has no concept meter: nothing to plot.");
        } else {
            ui.weak(format!(
                "The prompt names none of the meter's concepts ({}): nothing to plot.",
                score_labels.join(", ")
            ));
        }
        return;
    };
    let slider = run.spec.slider;
    let curve = run.curve();
    let lost = run.lost_at();
    match lost {
        Some((value, score)) => ui.label(format!(
            "“{}” is lost at {} {} (score {score:.2} < {LOST_BELOW})",
            concept.label,
            slider.title(),
            slider.value_label(value)
        )),
        None if curve.len() == run.values.len() => ui.label(format!(
            "“{}” holds over the whole sequence (score ≥ {LOST_BELOW})",
            concept.label
        )),
        None => ui.label(format!("“{}”: scores coming…", concept.label)),
    };
    Plot::new("minds-concept-plot")
        .height(PLOT_HEIGHT)
        .include_y(0.0)
        .include_y(1.0)
        .x_axis_label(slider.axis_label())
        .y_axis_label(format!("P({})", concept.label))
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(Line::new(
                concept.label.clone(),
                PlotPoints::from(curve.clone()),
            ));
            plot.points(Points::new("tiles", PlotPoints::from(curve)).radius(3.0));
            plot.hline(HLine::new("lost below", f64::from(LOST_BELOW)).color(Color32::GRAY));
            if let Some((value, _)) = lost {
                plot.vline(VLine::new("lost at", value).color(Color32::RED));
            }
        });
}

/// The sweep's kind and buttons, its progress and its grid of tiles.
pub fn sweep_ui(
    ui: &mut Ui,
    spec: &mut SweepSpec,
    tree: &TreeState,
    run: &SweepRun,
    textures: &mut TileTextures,
    num_modules: usize,
    dialog_open: bool,
) -> Vec<RunAction> {
    let mut actions = Vec::new();
    ui.strong("Sweep");
    ui.horizontal_wrapped(|ui| {
        egui::ComboBox::from_id_salt("minds-sweep-kind")
            .selected_text(spec.kind.title())
            .show_ui(ui, |ui| {
                for kind in [EditKind::Knockout, EditKind::Randomize] {
                    ui.selectable_value(&mut spec.kind, kind, kind.title());
                }
            })
            .response
            .on_hover_text("What is done to each module in turn");
        if spec.kind == EditKind::Randomize {
            ui.add(egui::DragValue::new(&mut spec.seed).prefix("seed "));
        }
        let filtered = if tree.filter.is_empty() {
            String::new()
        } else {
            format!(" matching “{}”", tree.filter)
        };
        ui.label(format!(
            "each of the {num_modules} modules of the {}{filtered}, in turn",
            tree.component.name()
        ));
    });
    ui.horizontal(|ui| {
        let running = run.tiles.status == RunStatus::Running;
        if ui
            .add_enabled(!running, egui::Button::new("Run sweep"))
            .clicked()
        {
            actions.push(RunAction::RunSweep);
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel"))
            .clicked()
        {
            actions.push(RunAction::CancelSweep);
        }
        let missing = run.tiles.missing().len();
        let can_resume = !running && missing > 0 && run.tiles.num_made() > 0;
        if ui
            .add_enabled(
                can_resume,
                egui::Button::new(format!("Resume ({missing} left)")),
            )
            .clicked()
        {
            actions.push(RunAction::ResumeSweep);
        }
        let can_export = run.tiles.num_made() > 0 && !dialog_open;
        if ui
            .add_enabled(can_export, egui::Button::new("Export sweep mosaic…"))
            .clicked()
        {
            actions.push(RunAction::ExportSweep);
        }
    });
    status_ui(ui, &run.tiles);
    if run.concept.is_some() {
        let needed = run.most_needed(3);
        if !needed.is_empty() {
            let names: Vec<String> = needed
                .iter()
                .map(|&(i, drop)| format!("{} (−{drop:.2})", run.tiles.labels[i]))
                .collect();
            ui.label(format!("The concept needs most: {}", names.join(", ")));
        }
    }
    ui.horizontal_wrapped(|ui| {
        for (i, label) in run.tiles.labels.iter().enumerate() {
            let texture = textures.get(ui.ctx(), &run.tiles, i);
            let result = run.tiles.results[i].as_ref();
            let short = tile_label(label);
            tile_ui(ui, texture, result, &short, SWEEP_TILE);
        }
    });
    actions
}

/// A sweep tile's label: the module's short name.
fn tile_label(label: &str) -> String {
    if label == INTACT_LABEL {
        label.to_string()
    } else {
        short_module_label(label)
    }
}

/// The tiles made, with labels, as a mosaic of `columns` columns.
fn mosaic(
    title: String,
    set: &TileSet,
    columns: usize,
    label: impl Fn(&str) -> String,
) -> Option<Mosaic> {
    let tiles: Vec<MosaicTile> = set
        .labels
        .iter()
        .zip(&set.results)
        .filter_map(|(l, r)| {
            let r = r.as_ref()?;
            Some(MosaicTile {
                picture: r.picture.clone(),
                label: label(l),
                recipe: r.recipe.clone(),
            })
        })
        .collect();
    let width = tiles.iter().map(|t| t.picture.width).max()?;
    Some(Mosaic {
        title,
        columns: columns.clamp(1, tiles.len()),
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        tiles,
        style: MosaicStyle {
            zoom: (MOSAIC_TILE_PX / width.max(1)).max(1),
            ..MosaicStyle::default()
        },
    })
}

/// The sequence's tiles as one labelled strip.
pub fn sequence_mosaic(run: &SequenceRun, cx: &PanelContext<'_>) -> Option<Mosaic> {
    let spec = run.spec;
    let title = format!(
        "{}: {} from {} by {}",
        cx.settings.prompt,
        spec.slider.title(),
        spec.slider.value_label(spec.start),
        spec.step
    );
    mosaic(title, &run.tiles, run.tiles.labels.len(), str::to_string)
}

/// The sweep's tiles as a labelled grid.
pub fn sweep_mosaic(run: &SweepRun, cx: &PanelContext<'_>) -> Option<Mosaic> {
    let title = format!(
        "{}: {} each module of the {}",
        cx.settings.prompt,
        run.spec.kind.title(),
        run.spec.component.name()
    );
    mosaic(title, &run.tiles, SWEEP_COLUMNS, tile_label)
}
