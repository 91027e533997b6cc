//! Native file dialogs, run off the UI thread so the window keeps drawing previews while one is
//! open.
//!
//! The dialog is built on the UI thread (macOS wants that) and awaited on a named helper thread;
//! the result comes back over a bounded channel and the helper wakes the UI. A save dialog only
//! chooses the path: the app asks before replacing a file that is there, then [`Dialogs::write`]
//! writes on another helper thread (a temporary file in the target folder, renamed into place),
//! so a large mosaic never stalls the window and a failed write leaves nothing half-written.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::engine::pipeline::Picture;
use crate::mosaic::Mosaic;
use crate::recipe;

/// Something to save as a PNG with its recipe (or its mosaic record) inside.
#[derive(Debug, Clone)]
pub enum Export {
    /// One picture and its recipe's JSON.
    Picture {
        /// The picture.
        picture: Picture,
        /// Its recipe, as JSON.
        recipe_json: String,
    },
    /// A grid, drawn into one PNG with every tile's recipe.
    Mosaic(Box<Mosaic>),
}

impl Export {
    /// Writes the PNG atomically: a temporary file in the target folder, then a rename.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        match self {
            Export::Picture {
                picture,
                recipe_json,
            } => recipe::write_png(path, picture, recipe_json),
            Export::Mosaic(mosaic) => mosaic.write(path).map(|_| ()),
        }
    }

    /// What it is, for messages.
    pub fn what(&self) -> &'static str {
        match self {
            Export::Picture { .. } => "picture",
            Export::Mosaic(_) => "mosaic",
        }
    }
}

/// What a closed dialog (or a finished write) brought back.
#[derive(Debug)]
pub enum DialogOutcome {
    /// The model folder chosen, or `None` when the dialog was dismissed.
    ModelFolder(Option<PathBuf>),
    /// The recipe file chosen, or `None` when the dialog was dismissed.
    RecipeFile(Option<PathBuf>),
    /// Where to save, with what; `None` when dismissed. Nothing is written yet.
    SavePath(Option<(PathBuf, Export)>),
    /// What was written where, or why writing failed.
    Saved(Result<(PathBuf, &'static str), String>),
}

/// At most one dialog is open; its outcome arrives through [`Dialogs::try_recv`].
pub struct Dialogs {
    outcomes_tx: Sender<DialogOutcome>,
    outcomes: Receiver<DialogOutcome>,
    open: bool,
}

impl Default for Dialogs {
    fn default() -> Self {
        // One dialog at a time, so one slot is enough; a second one is headroom.
        let (outcomes_tx, outcomes) = bounded(2);
        Self {
            outcomes_tx,
            outcomes,
            open: false,
        }
    }
}

impl Dialogs {
    /// Whether a dialog is open (the buttons that open one are disabled meanwhile).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Opens a folder dialog for a model in diffusers' layout.
    pub fn pick_model_folder(&mut self, ctx: &egui::Context) {
        let dialog = rfd::AsyncFileDialog::new()
            .set_title("Load a model folder (diffusers layout)")
            .pick_folder();
        let _ = self.spawn(ctx, "interconcept-dialog-model", async move {
            DialogOutcome::ModelFolder(dialog.await.map(|handle| handle.path().to_path_buf()))
        });
    }

    /// Opens a dialog to choose a recipe: JSON, or a PNG made by the program.
    pub fn pick_recipe(&mut self, ctx: &egui::Context) {
        let dialog = rfd::AsyncFileDialog::new()
            .set_title("Open a recipe (JSON, or a PNG made by interconcept)")
            .add_filter("Recipe or picture", &["json", "png"])
            .pick_file();
        let _ = self.spawn(ctx, "interconcept-dialog-recipe", async move {
            DialogOutcome::RecipeFile(dialog.await.map(|handle| handle.path().to_path_buf()))
        });
    }

    /// Opens a save dialog for `export`; the path chosen comes back as
    /// [`DialogOutcome::SavePath`] and nothing is written until [`Dialogs::write`].
    pub fn choose_save_path(&mut self, ctx: &egui::Context, export: Export, file_name: String) {
        let title = match export {
            Export::Picture { .. } => "Save the picture with its recipe",
            Export::Mosaic(_) => "Export the mosaic with every tile's recipe",
        };
        let dialog = rfd::AsyncFileDialog::new()
            .set_title(title)
            .set_file_name(file_name)
            .add_filter("PNG image", &["png"])
            .save_file();
        let _ = self.spawn(ctx, "interconcept-dialog-save", async move {
            let path = dialog.await.map(|handle| handle.path().to_path_buf());
            DialogOutcome::SavePath(path.map(|path| (path, export)))
        });
    }

    /// Writes `export` to `path` on a helper thread (replacing a file there: ask first); the
    /// result comes back as [`DialogOutcome::Saved`]. An error when no thread could start; the
    /// picture or grid is still in the window to save again.
    pub fn write(
        &mut self,
        ctx: &egui::Context,
        path: PathBuf,
        export: Export,
    ) -> Result<(), String> {
        let started = self.spawn(ctx, "interconcept-write", async move {
            let written = export
                .write(&path)
                .map(|()| (path, export.what()))
                .map_err(|e| format!("{} not saved: {e:#}", export.what()));
            DialogOutcome::Saved(written)
        });
        if started {
            Ok(())
        } else {
            Err("cannot start a thread to write the file; nothing was written".into())
        }
    }

    /// The outcome of the dialog that closed, if one did; never blocks.
    pub fn try_recv(&mut self) -> Option<DialogOutcome> {
        let outcome = self.outcomes.try_recv().ok()?;
        self.open = false;
        Some(outcome)
    }

    /// Runs `task` on a named helper thread; false when the thread could not start.
    fn spawn(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        task: impl Future<Output = DialogOutcome> + Send + 'static,
    ) -> bool {
        let outcomes = self.outcomes_tx.clone();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let outcome = block_on(task);
                // The receiver lives as long as the app; a send can only fail at shutdown.
                let _ = outcomes.send(outcome);
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.open = true;
                true
            }
            Err(e) => {
                tracing::error!("cannot start a dialog thread: {e}");
                false
            }
        }
    }
}

/// Runs a future to completion on the current thread, parking it between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_parks_until_woken_from_another_thread() {
        type Slot = (Option<u32>, Option<Waker>);
        let slot: Arc<std::sync::Mutex<Slot>> = Arc::default();
        let sender = Arc::clone(&slot);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut slot = sender.lock().expect("lock");
            slot.0 = Some(7);
            if let Some(waker) = slot.1.take() {
                waker.wake();
            }
        });
        let value = block_on(std::future::poll_fn(|cx| {
            let mut slot = slot.lock().expect("lock");
            match slot.0 {
                Some(v) => Poll::Ready(v),
                None => {
                    slot.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }));
        assert_eq!(value, 7);
        thread.join().expect("sender thread");
    }
}
