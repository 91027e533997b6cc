//! Native file dialogs, run off the UI thread so the window keeps drawing previews while one is
//! open.
//!
//! The dialog is built on the UI thread (macOS wants that) and awaited on a named helper thread,
//! which also writes the PNG once a path is chosen; the result comes back over a bounded channel
//! and the helper wakes the UI.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::engine::pipeline::Picture;
use crate::recipe;

/// What a closed dialog brought back.
#[derive(Debug)]
pub enum DialogOutcome {
    /// The model folder chosen, or `None` when the dialog was dismissed.
    ModelFolder(Option<PathBuf>),
    /// Where the PNG was written, `None` when dismissed, or why writing failed.
    Saved(Result<Option<PathBuf>, String>),
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
        self.spawn(ctx, "interconcept-dialog-model", async move {
            DialogOutcome::ModelFolder(dialog.await.map(|handle| handle.path().to_path_buf()))
        });
    }

    /// Opens a save dialog and writes the picture there with its recipe inside the PNG.
    pub fn save_png(
        &mut self,
        ctx: &egui::Context,
        picture: Picture,
        recipe_json: String,
        file_name: String,
    ) {
        let dialog = rfd::AsyncFileDialog::new()
            .set_title("Save the picture with its recipe")
            .set_file_name(file_name)
            .add_filter("PNG image", &["png"])
            .save_file();
        self.spawn(ctx, "interconcept-dialog-save", async move {
            let Some(handle) = dialog.await else {
                return DialogOutcome::Saved(Ok(None));
            };
            let path = handle.path().to_path_buf();
            let written = recipe::write_png(&path, &picture, &recipe_json)
                .map(|()| Some(path))
                .map_err(|e| format!("{e:#}"));
            DialogOutcome::Saved(written)
        });
    }

    /// The outcome of the dialog that closed, if one did; never blocks.
    pub fn try_recv(&mut self) -> Option<DialogOutcome> {
        let outcome = self.outcomes.try_recv().ok()?;
        self.open = false;
        Some(outcome)
    }

    fn spawn(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        task: impl Future<Output = DialogOutcome> + Send + 'static,
    ) {
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
            Ok(_) => self.open = true,
            Err(e) => tracing::error!("cannot start a dialog thread: {e}"),
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
