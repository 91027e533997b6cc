//! The recipe and export side of [`ExplorerApp`]: recipes opened from the dialog, dropped on
//! the window or pasted (all through [`recipe_restore::restore`]), the tiles of an opened
//! mosaic, and saves that ask before replacing a file.

use std::path::{Path, PathBuf};

use super::ExplorerApp;
use crate::gui::dialogs::Export;
use crate::gui::recipe_restore::{self, Opened};
use crate::gui::result_panel::Notice;
use crate::mosaic::{Mosaic, MosaicRecord};
use crate::recipe::Recipe;

/// How long after "Paste recipe" a paste still counts as the recipe asked for.
const PASTE_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

impl ExplorerApp {
    /// The app's own message after the job status (an export written, a recipe refused).
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// The file a save would replace, while the app asks whether to.
    pub fn replace_pending(&self) -> Option<&Path> {
        self.replace.as_ref().map(|(path, _)| path.as_path())
    }

    /// The mosaic whose tiles are offered, after one was opened.
    pub fn opened_mosaic(&self) -> Option<&MosaicRecord> {
        self.opened_mosaic.as_ref().map(|(_, record)| &**record)
    }

    /// Saves the finished picture to `path` as if chosen in the save dialog: asks first when a
    /// file is there.
    pub fn save_picture_to(&mut self, ctx: &egui::Context, path: PathBuf) {
        if let Some(finished) = self.jobs.finished() {
            let export = Export::Picture {
                picture: finished.picture.clone(),
                recipe_json: finished.recipe.to_json(),
            };
            self.save_chosen(ctx, path, export);
        }
    }

    /// Writes `mosaic` to `path` as if chosen in the export dialog: asks first when a file is
    /// there.
    pub fn export_mosaic_to(&mut self, ctx: &egui::Context, mosaic: Mosaic, path: PathBuf) {
        self.save_chosen(ctx, path, Export::Mosaic(Box::new(mosaic)));
    }

    /// Opens a recipe file (JSON, or a PNG made by the program) as if chosen in the open
    /// dialog or dropped on the window.
    pub fn open_recipe_file(&mut self, path: &Path) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        match recipe_restore::read_opened(path) {
            Ok(opened) => self.open(&name, opened),
            Err(error) => self.refuse(&name, &error),
        }
    }

    /// Opens recipe JSON (pasted, or from the clipboard).
    pub fn open_recipe_text(&mut self, text: &str) {
        match recipe_restore::parse_json(text.trim()) {
            Ok(opened) => self.open("the pasted recipe", opened),
            Err(error) => self.refuse("the pasted text", &error),
        }
    }

    pub(super) fn open(&mut self, name: &str, opened: Opened) {
        match opened {
            Opened::Recipe(recipe) => self.restore(name, &recipe),
            Opened::Mosaic(record) => {
                self.notice = Some(Notice {
                    text: recipe_restore::mosaic_message(name, &record),
                    is_error: false,
                });
                self.opened_mosaic = Some((name.to_string(), record));
            }
        }
    }

    /// Makes the recipe's picture again: settings, edits, then the job. A refusal changes
    /// nothing but the status line.
    pub(super) fn restore(&mut self, name: &str, recipe: &Recipe) {
        let loaded = self.jobs.model().map(|m| &m.id);
        match recipe_restore::restore(recipe, loaded) {
            Ok(restored) => {
                self.settings = restored.settings;
                self.minds.set_edits(restored.edits);
                self.tab = super::Tab::Picture;
                self.submit_generate(restored.job);
                tracing::info!(%name, "recipe opened");
                self.notice = Some(Notice {
                    text: format!("opened {name}"),
                    is_error: false,
                });
            }
            Err(error) => self.refuse(name, &error),
        }
    }

    pub(super) fn refuse(&mut self, name: &str, error: &str) {
        tracing::warn!(%name, "recipe not opened: {error}");
        self.notice = Some(Notice {
            text: format!("cannot open {name}: {error}"),
            is_error: true,
        });
    }

    /// A path was chosen for `export`: write it, or first ask when a file is there.
    pub(super) fn save_chosen(&mut self, ctx: &egui::Context, path: PathBuf, export: Export) {
        if path.exists() {
            self.replace = Some((path, export));
        } else {
            self.write(ctx, path, export);
        }
    }

    pub(super) fn write(&mut self, ctx: &egui::Context, path: PathBuf, export: Export) {
        if let Err(error) = self.dialogs.write(ctx, path, export) {
            self.notice = Some(Notice {
                text: error,
                is_error: true,
            });
        }
    }

    /// Files dropped on the window and recipe JSON pasted outside text fields.
    pub(super) fn take_input(&mut self, ctx: &egui::Context) {
        let (dropped, pasted) = ctx.input(|i| {
            let dropped: Vec<PathBuf> = i
                .raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect();
            let pasted: Vec<String> = i
                .events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Paste(text) => Some(text.clone()),
                    _ => None,
                })
                .collect();
            (dropped, pasted)
        });
        if let Some(path) = dropped.first() {
            self.open_recipe_file(path);
            if dropped.len() > 1 {
                tracing::info!(
                    count = dropped.len(),
                    "only the first dropped file is opened"
                );
            }
        }
        // The integration answers "Paste recipe" within a frame or two, or not at all when the
        // clipboard holds no text; a later Ctrl+V in the prompt field is the prompt's.
        let awaiting = self
            .awaiting_paste
            .is_some_and(|asked| asked.elapsed() < PASTE_ANSWER_WITHIN);
        if !awaiting {
            self.awaiting_paste = None;
        }
        let text_has_focus = ctx.memory(|m| m.focused().is_some());
        for text in pasted {
            // Asked for, the paste is taken whatever it holds (and refused if not a recipe);
            // otherwise only JSON pasted outside text fields is.
            let asked = self.awaiting_paste.take().is_some();
            if asked || (!text_has_focus && text.trim_start().starts_with('{')) {
                self.open_recipe_text(&text);
            }
        }
    }

    /// The question before a file is replaced.
    pub(super) fn replace_ui(&mut self, ctx: &egui::Context) {
        let Some((path, export)) = &self.replace else {
            return;
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let folder = path
            .parent()
            .map_or_else(String::new, |p| p.display().to_string());
        let what = export.what();
        let mut answer = None;
        egui::Modal::new(egui::Id::unique("interconcept-replace")).show(ctx, |ui| {
            ui.heading(format!("Replace {name}?"));
            ui.label(format!(
                "A file of that name is already in {folder}. Replacing it with this {what} \
                 loses what it holds."
            ));
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                if ui.button("Replace").clicked() {
                    answer = Some(true);
                }
                if ui.button("Cancel").clicked() {
                    answer = Some(false);
                }
            });
        });
        match answer {
            Some(true) => {
                if let Some((path, export)) = self.replace.take() {
                    self.write(ctx, path, export);
                }
            }
            Some(false) => {
                self.replace = None;
                self.notice = Some(Notice {
                    text: format!("{what} not saved"),
                    is_error: false,
                });
            }
            None => {}
        }
    }

    /// The tiles of an opened mosaic, each a button that makes its picture again.
    pub(super) fn opened_mosaic_ui(&mut self, ctx: &egui::Context) {
        let Some((name, record)) = &self.opened_mosaic else {
            return;
        };
        let mut open = true;
        let mut chosen = None;
        egui::Window::new(format!("Tiles of {name}"))
            .open(&mut open)
            .default_width(260.0)
            .show(ctx, |ui| {
                if !record.title.is_empty() {
                    ui.label(&record.title);
                }
                egui::ScrollArea::vertical()
                    .max_height(300.0)
                    .show(ui, |ui| {
                        for (index, tile) in record.tiles.iter().enumerate() {
                            let text = format!("{},{}  {}", tile.row, tile.column, tile.label);
                            if ui.button(text).clicked() {
                                chosen = Some(index);
                            }
                        }
                    });
            });
        if let Some(index) = chosen {
            let tile = &record.tiles[index];
            let what = format!("tile {},{} of {name}", tile.row, tile.column);
            let recipe = tile.recipe.clone();
            self.restore(&what, &recipe);
        }
        if !open {
            self.opened_mosaic = None;
        }
    }
}
