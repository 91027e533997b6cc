//! The module tree: a component's modules grouped into blocks (down, mid, up), resnets,
//! attentions and samplers, each with a tick box and its parameter count, a filter, and the
//! edit a new tick gets.

use std::collections::BTreeSet;

use egui::Ui;
use egui::collapsing_header::CollapsingState;
use serde::{Deserialize, Serialize};

use super::controls::{EditKind, MindControls, ModuleEdit};
use crate::engine::model::Component;
use crate::engine::surgery::{GroupEntry, ModuleCatalog, ModuleGroup};
use crate::gui::jobs::LoadedModel;
use crate::gui::minds_panel::catalog_of;

/// The width of the tree column, in points.
pub const TREE_WIDTH: f32 = 330.0;

/// The height of the tree's scroll area, in points.
const TREE_HEIGHT: f32 = 260.0;

/// What the tree shows and what a new tick does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TreeState {
    /// The component whose modules are listed.
    pub component: Component,
    /// Only modules whose name contains this, ignoring case (empty: all).
    pub filter: String,
    /// The edit a newly ticked module gets.
    pub brush: ModuleEdit,
}

impl Default for TreeState {
    fn default() -> Self {
        Self {
            component: Component::Unet,
            filter: String::new(),
            brush: ModuleEdit::default(),
        }
    }
}

/// A count as people read it: `320`, `12.3k`, `1.2M`.
pub fn human_count(n: usize) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

/// The modules the ticks of `component` cover (a ticked group covers all of its own), as
/// indices into the catalog.
pub fn covered_modules(catalog: &ModuleCatalog, controls: &MindControls) -> BTreeSet<usize> {
    let mut covered = BTreeSet::new();
    for tick in controls.ticks() {
        if tick.component != catalog.component {
            continue;
        }
        let prefix = format!("{}.", tick.module);
        for (i, m) in catalog.modules.iter().enumerate() {
            if m.name == tick.module || m.name.starts_with(&prefix) {
                covered.insert(i);
            }
        }
    }
    covered
}

/// The component selector, the filter, the brush, the count of what is ticked and the tree.
pub fn modules_ui(
    ui: &mut Ui,
    model: &LoadedModel,
    tree: &mut TreeState,
    controls: &mut MindControls,
) {
    ui.horizontal(|ui| {
        let label = ui.strong("Modules of the");
        egui::ComboBox::from_id_salt("minds-component")
            .selected_text(tree.component.name())
            .show_ui(ui, |ui| {
                for component in Component::ALL {
                    ui.selectable_value(&mut tree.component, component, component.name());
                }
            })
            .response
            .labelled_by(label.id);
    });
    ui.horizontal(|ui| {
        let label = ui.label("Filter");
        ui.add(
            egui::TextEdit::singleline(&mut tree.filter)
                .hint_text("attn2, up_blocks.1, conv…")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(label.id);
    });
    ui.horizontal(|ui| {
        ui.label("A tick does");
        edit_ui(
            ui,
            "minds-brush",
            "What a newly ticked module gets",
            &mut tree.brush,
        );
    });
    let Some(catalog) = catalog_of(model, tree.component) else {
        ui.label("This model lists no modules for that component.");
        return;
    };

    // What is selected: ticks, the modules they cover and their parameters.
    let covered = covered_modules(catalog, controls);
    let params: usize = covered
        .iter()
        .map(|&i| catalog.modules[i].num_params())
        .sum();
    let elsewhere = controls
        .ticks()
        .iter()
        .filter(|t| t.component != tree.component)
        .count();
    ui.horizontal(|ui| {
        let mut text = format!(
            "{} of {} modules ticked ({} of {} parameters)",
            covered.len(),
            catalog.modules.len(),
            human_count(params),
            human_count(catalog.num_params()),
        );
        if elsewhere > 0 {
            text.push_str(&format!(", {elsewhere} in other components"));
        }
        ui.label(text);
        if ui
            .add_enabled(
                !controls.ticks().is_empty(),
                egui::Button::new("Untick all"),
            )
            .clicked()
        {
            for tick in controls.ticks().to_vec() {
                controls.set_tick(tick.component, &tick.module, None);
            }
        }
    });
    if !controls.extra().is_empty() {
        ui.horizontal(|ui| {
            let labels: Vec<String> = controls.extra().iter().map(|e| e.label()).collect();
            ui.label(format!("also from the recipe: {}", labels.join(", ")))
                .on_hover_text("Edits of the opened recipe that no control here shows");
            if ui.small_button("Drop").clicked() {
                controls.clear_extra();
            }
        });
    }

    let filter = tree.filter.to_lowercase();
    egui::ScrollArea::vertical()
        .id_salt(("minds-tree", tree.component.name()))
        .max_height(TREE_HEIGHT)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            let root = catalog.tree();
            let mut walk = TreeWalk {
                catalog,
                filter: &filter,
                brush: tree.brush,
                controls,
            };
            walk.group_ui(ui, &root);
        });
}

/// The kind of an edit, with its seed or factor.
fn edit_ui(ui: &mut Ui, id: impl egui::AsIdSalt, what: &str, edit: &mut ModuleEdit) {
    egui::ComboBox::from_id_salt(id)
        .selected_text(edit.kind.title())
        .width(90.0)
        .show_ui(ui, |ui| {
            for kind in EditKind::ALL {
                ui.selectable_value(&mut edit.kind, kind, kind.title());
            }
        })
        .response
        .on_hover_text(what);
    match edit.kind {
        EditKind::Knockout => {}
        EditKind::Randomize => {
            ui.add(egui::DragValue::new(&mut edit.seed).prefix("seed "))
                .on_hover_text("Seed of the noise that replaces the weights");
        }
        EditKind::Scale => {
            ui.add(
                egui::DragValue::new(&mut edit.factor)
                    .speed(0.01)
                    .range(-10.0..=10.0)
                    .prefix("×"),
            )
            .on_hover_text("Every weight of the module is multiplied by this");
        }
    }
}

/// Draws the tree below one group.
struct TreeWalk<'a> {
    catalog: &'a ModuleCatalog,
    filter: &'a str,
    brush: ModuleEdit,
    controls: &'a mut MindControls,
}

impl TreeWalk<'_> {
    fn matches(&self, name: &str) -> bool {
        self.filter.is_empty() || name.to_lowercase().contains(self.filter)
    }

    fn group_matches(&self, group: &ModuleGroup) -> bool {
        self.matches(&group.path)
            || group.entries.iter().any(|entry| match entry {
                GroupEntry::Module(i) => self.matches(&self.catalog.modules[*i].name),
                GroupEntry::Group(g) => self.group_matches(g),
            })
    }

    fn group_ui(&mut self, ui: &mut Ui, group: &ModuleGroup) {
        // A group whose own name matches shows everything in it.
        let everything = self.matches(&group.path) && !group.path.is_empty();
        let prefix = if group.path.is_empty() {
            String::new()
        } else {
            format!("{}.", group.path)
        };
        for entry in &group.entries {
            match entry {
                GroupEntry::Module(i) => {
                    let module = &self.catalog.modules[*i];
                    if everything || self.matches(&module.name) {
                        let short = module.name.strip_prefix(&prefix).unwrap_or(&module.name);
                        let detail = format!(
                            "{} · {}",
                            human_count(module.num_params()),
                            module.shapes_label()
                        );
                        self.row_ui(ui, &module.name, short, &detail);
                    }
                }
                GroupEntry::Group(g) => {
                    if !(everything || self.group_matches(g)) {
                        continue;
                    }
                    let short = g.path.strip_prefix(&prefix).unwrap_or(&g.path);
                    let id = ui.make_persistent_id(("minds-group", &g.path));
                    let mut state = CollapsingState::load_with_default_open(ui.ctx(), id, false);
                    if !self.filter.is_empty() {
                        state.set_open(true);
                    }
                    let detail =
                        format!("{} modules · {}", g.num_modules, human_count(g.num_params));
                    state
                        .show_header(ui, |ui| self.row_ui(ui, &g.path, short, &detail))
                        .body(|ui| self.group_ui(ui, g));
                }
            }
        }
    }

    /// A tick box named `short`, its detail, and the tick's edit when ticked.
    fn row_ui(&mut self, ui: &mut Ui, module: &str, short: &str, detail: &str) {
        let component = self.catalog.component;
        ui.horizontal(|ui| {
            let mut ticked = self.controls.tick(component, module).is_some();
            let response = ui.checkbox(&mut ticked, short).on_hover_text(module);
            if response.changed() {
                let edit = ticked.then_some(self.brush);
                self.controls.set_tick(component, module, edit);
            }
            ui.weak(detail);
            if let Some(edit) = self.controls.tick_mut(component, module) {
                let what = format!("What is done to {module}");
                edit_ui(ui, ("minds-edit", module), &what, edit);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_like_numbers() {
        assert_eq!(human_count(320), "320");
        assert_eq!(human_count(12_345), "12.3k");
        assert_eq!(human_count(859_520_964), "859.5M");
    }

    #[test]
    fn a_ticked_group_covers_its_modules_only() {
        let catalog = ModuleCatalog::from_shapes(
            Component::Unet,
            [
                "mid_block.resnets.0.conv1.weight",
                "mid_block.resnets.0.conv2.weight",
                "mid_block_extra.weight",
                "conv_in.weight",
            ]
            .iter()
            .map(|n| (n.to_string(), vec![1])),
        );
        let mut controls = MindControls::default();
        controls.set_tick(Component::Unet, "mid_block", Some(ModuleEdit::default()));
        controls.set_tick(Component::Vae, "conv_in", Some(ModuleEdit::default()));
        let covered = covered_modules(&catalog, &controls);
        let names: Vec<&str> = covered
            .iter()
            .map(|&i| catalog.modules[i].name.as_str())
            .collect();
        assert_eq!(
            names,
            vec!["mid_block.resnets.0.conv1", "mid_block.resnets.0.conv2"]
        );
    }
}
