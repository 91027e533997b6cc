//! What the navigator's controls hold, as plain data: the mode, the plane (its space, its
//! directions, the fill's grid and the island), the line and the gallery. The panel draws them;
//! [`super::recipes`] turns them into recipes; [`super::settings`] remembers them between runs.

use serde::{Deserialize, Serialize};

use crate::cli_navigator::caption_vocabulary;
use crate::engine::space::{ConceptPoint, PlaneDirections};
use crate::navigator::PlaneKind;

/// The most tiles along a line the panel offers.
pub const MAX_LINE_POINTS: usize = 64;

/// The furthest past each end of a line the panel offers, in lengths of the line.
pub const MAX_BEYOND: f64 = 4.0;

/// The most random points in one gallery the panel offers.
pub const MAX_GALLERY: usize = 256;

/// Which kind of walk through concept space the panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A plane through the prompt: a canvas to click, fill, zoom and pan.
    #[default]
    Plane,
    /// A line from one prompt to another, and beyond.
    Line,
    /// Random points of interconcept space.
    Gallery,
}

impl Mode {
    /// Every mode, in the order offered.
    pub const ALL: [Mode; 3] = [Mode::Plane, Mode::Line, Mode::Gallery];

    /// The mode's name on its button.
    pub fn title(self) -> &'static str {
        match self {
            Mode::Plane => "Plane",
            Mode::Line => "Line",
            Mode::Gallery => "Random gallery",
        }
    }
}

/// Which space the plane canvas moves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaneSpace {
    /// The text encoder's output: the conditioning moves, the initial noise stays the seed's.
    #[default]
    Concept,
    /// The initial noise: the prompt stays, the starting noise moves on a random plane through
    /// the seed's noise.
    Noise,
}

impl PlaneSpace {
    /// Both spaces, in the order offered.
    pub const ALL: [PlaneSpace; 2] = [PlaneSpace::Concept, PlaneSpace::Noise];

    /// The space's name on its button.
    pub fn title(self) -> &'static str {
        match self {
            PlaneSpace::Concept => "text-embedding plane",
            PlaneSpace::Noise => "initial-noise plane",
        }
    }

    /// What the button's tooltip says.
    pub fn hint(self) -> &'static str {
        match self {
            PlaneSpace::Concept => {
                "move the prompt's point in concept space; the starting noise stays the seed's"
            }
            PlaneSpace::Noise => {
                "keep the prompt and move the starting noise on a random plane through the \
                 seed's noise"
            }
        }
    }
}

/// How the plane through the prompt is laid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlaneControls {
    /// Which space the plane lies in.
    pub space: PlaneSpace,
    /// Toward two prompts rather than in random directions.
    pub toward: bool,
    /// Seed of the random directions.
    pub directions_seed: u64,
    /// The prompt the first direction points to (at (1, 0)).
    pub toward_a: String,
    /// The prompt that sets the second direction.
    pub toward_b: String,
    /// Tiles along each side of a fill.
    pub grid: usize,
    /// Colour tiles by the concept's score and draw the island's shore.
    pub island: bool,
    /// The score label whose island is shown; `None`: the one the prompt names.
    pub concept: Option<usize>,
}

impl Default for PlaneControls {
    fn default() -> Self {
        Self {
            space: PlaneSpace::Concept,
            toward: false,
            directions_seed: 1,
            toward_a: String::new(),
            toward_b: String::new(),
            grid: 5,
            island: false,
            concept: None,
        }
    }
}

impl PlaneControls {
    /// What the plane varies and what spans it. A noise plane always has random directions:
    /// there are no prompts to point toward in noise space.
    pub fn kind(&self) -> PlaneKind {
        match self.space {
            PlaneSpace::Noise => PlaneKind::Noise {
                directions_seed: self.directions_seed,
            },
            PlaneSpace::Concept if self.toward => PlaneKind::Concept(PlaneDirections::Toward {
                a: Box::new(ConceptPoint::Prompt(self.toward_a.clone())),
                b: Box::new(ConceptPoint::Prompt(self.toward_b.clone())),
            }),
            PlaneSpace::Concept => PlaneKind::Concept(PlaneDirections::Random {
                seed: self.directions_seed,
            }),
        }
    }

    /// Whether the plane points toward two prompts.
    pub fn is_toward(&self) -> bool {
        self.space == PlaneSpace::Concept && self.toward
    }

    /// The unit of u and v, in words.
    pub fn unit(&self) -> &'static str {
        match self.space {
            PlaneSpace::Noise => "|noise|",
            PlaneSpace::Concept if self.toward => "|a - centre|",
            PlaneSpace::Concept => "|centre|",
        }
    }
}

/// How the line runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LineControls {
    /// The prompt at t = 0; empty: the settings' prompt.
    pub from: String,
    /// The prompt at t = 1.
    pub to: String,
    /// Tiles along the line.
    pub points: usize,
    /// How far past each end, in units of the line's length.
    pub beyond: f64,
    /// Along the great circle.
    pub slerp: bool,
}

impl Default for LineControls {
    fn default() -> Self {
        Self {
            from: String::new(),
            to: String::new(),
            points: 9,
            beyond: 0.25,
            slerp: false,
        }
    }
}

/// Which random points the gallery shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GalleryControls {
    /// How many.
    pub count: usize,
    /// Seed of the first; the others follow it.
    pub first_seed: u64,
    /// The reference prompts whose statistics the points follow, one a line.
    pub reference: String,
}

impl Default for GalleryControls {
    fn default() -> Self {
        Self {
            count: 16,
            first_seed: 0,
            reference: caption_vocabulary().join("\n"),
        }
    }
}

/// Everything the navigator's controls hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Controls {
    /// Which walk.
    pub mode: Mode,
    /// The plane's.
    pub plane: PlaneControls,
    /// The line's.
    pub line: LineControls,
    /// The gallery's.
    pub gallery: GalleryControls,
}
