//! The words of the data set: the ten class names, the colour palette that tints the grey
//! pictures, and the captions that put the two together with the right article.

use serde::{Deserialize, Serialize};

/// Number of Fashion-MNIST classes.
pub const NUM_CLASSES: usize = 10;

/// Short, lower-case names of the ten classes, in label order (label 0 is "t-shirt").
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "t-shirt",
    "trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// How a caption says each class: a fixed lead that carries its own article ("a pair of"), or
/// none, in which case the article is chosen from the word that follows it.
const CLASS_PHRASES: [(Option<&str>, &str); NUM_CLASSES] = [
    (None, "t-shirt"),
    (Some("a pair of"), "trousers"),
    (None, "pullover"),
    (None, "dress"),
    (None, "coat"),
    (None, "sandal"),
    (None, "shirt"),
    (None, "sneaker"),
    (None, "bag"),
    (None, "ankle boot"),
];

/// A named tint. Each colour is an RGB multiplier whose largest component is exactly 1.0, so
/// the maximum over channels of a tinted picture equals the grey picture it was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// Red.
    Red,
    /// Orange.
    Orange,
    /// Yellow.
    Yellow,
    /// Green.
    Green,
    /// Cyan.
    Cyan,
    /// Blue.
    Blue,
    /// Purple.
    Purple,
    /// White: the untinted grey picture.
    White,
}

impl Colour {
    /// The whole palette, white last.
    pub const ALL: [Self; 8] = [
        Self::Red,
        Self::Orange,
        Self::Yellow,
        Self::Green,
        Self::Cyan,
        Self::Blue,
        Self::Purple,
        Self::White,
    ];

    /// The word a caption uses for this colour.
    pub fn name(self) -> &'static str {
        match self {
            Self::Red => "red",
            Self::Orange => "orange",
            Self::Yellow => "yellow",
            Self::Green => "green",
            Self::Cyan => "cyan",
            Self::Blue => "blue",
            Self::Purple => "purple",
            Self::White => "white",
        }
    }

    /// The RGB multiplier; its largest component is 1.0.
    pub fn rgb(self) -> [f32; 3] {
        match self {
            Self::Red => [1.0, 0.15, 0.12],
            Self::Orange => [1.0, 0.5, 0.05],
            Self::Yellow => [1.0, 0.9, 0.1],
            Self::Green => [0.15, 1.0, 0.2],
            Self::Cyan => [0.1, 0.9, 1.0],
            Self::Blue => [0.15, 0.3, 1.0],
            Self::Purple => [0.65, 0.2, 1.0],
            Self::White => [1.0, 1.0, 1.0],
        }
    }

    /// Looks a colour up by its caption word.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|colour| colour.name() == name)
    }
}

/// "an" before a vowel, "a" otherwise; enough for the words of this vocabulary.
fn article(next_word: &str) -> &'static str {
    match next_word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The caption of a picture of `class`, naming its colour when one is given:
/// `caption(7, Some(Colour::Orange))` is "an orange sneaker", `caption(1, Some(Colour::Blue))`
/// is "a pair of blue trousers", `caption(9, None)` is "an ankle boot".
///
/// # Panics
///
/// If `class >= NUM_CLASSES`.
pub fn caption(class: usize, colour: Option<Colour>) -> String {
    let (lead, noun) = CLASS_PHRASES[class];
    let described = match colour {
        Some(colour) => format!("{} {noun}", colour.name()),
        None => noun.to_owned(),
    };
    let lead = lead.unwrap_or_else(|| article(&described));
    format!("{lead} {described}")
}

/// The uncoloured prompt for `class` ("a pullover"), the one evaluations ask the model for.
///
/// # Panics
///
/// If `class >= NUM_CLASSES`.
pub fn class_prompt(class: usize) -> String {
    caption(class, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncoloured_prompts_have_the_right_article() {
        let prompts: Vec<String> = (0..NUM_CLASSES).map(class_prompt).collect();
        assert_eq!(
            prompts,
            [
                "a t-shirt",
                "a pair of trousers",
                "a pullover",
                "a dress",
                "a coat",
                "a sandal",
                "a shirt",
                "a sneaker",
                "a bag",
                "an ankle boot",
            ]
        );
    }

    #[test]
    fn coloured_captions_put_the_colour_before_the_noun() {
        assert_eq!(caption(7, Some(Colour::Red)), "a red sneaker");
        assert_eq!(caption(7, Some(Colour::Orange)), "an orange sneaker");
        assert_eq!(caption(1, Some(Colour::Blue)), "a pair of blue trousers");
        assert_eq!(
            caption(1, Some(Colour::Orange)),
            "a pair of orange trousers"
        );
        assert_eq!(caption(9, Some(Colour::Green)), "a green ankle boot");
        assert_eq!(caption(9, Some(Colour::Orange)), "an orange ankle boot");
        assert_eq!(caption(0, Some(Colour::White)), "a white t-shirt");
    }

    #[test]
    fn every_caption_is_well_formed() {
        for (class, (_, noun)) in CLASS_PHRASES.iter().enumerate() {
            for colour in Colour::ALL {
                let text = caption(class, Some(colour));
                let words: Vec<&str> = text.split(' ').collect();
                assert!(
                    words.iter().all(|w| !w.is_empty()),
                    "{text:?} has a double space"
                );
                assert!(text.contains(colour.name()), "{text:?} lacks its colour");
                assert!(text.ends_with(noun), "{text:?} lacks its noun");
                let expected = if class == 1 {
                    "a"
                } else if colour == Colour::Orange {
                    "an"
                } else {
                    "a"
                };
                assert_eq!(words[0], expected, "wrong article in {text:?}");
            }
        }
    }

    #[test]
    fn palette_keeps_the_grey_as_max_over_channels() {
        for colour in Colour::ALL {
            let max = colour.rgb().into_iter().fold(f32::MIN, f32::max);
            assert_eq!(max, 1.0, "{colour:?}");
            assert!(colour.rgb().iter().all(|c| (0.0..=1.0).contains(c)));
            assert_eq!(Colour::from_name(colour.name()), Some(colour));
        }
    }
}
